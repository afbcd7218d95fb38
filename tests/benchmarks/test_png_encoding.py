"""python -m benchmarks.png_encoding end to end on tiny images, and its decode check."""

import json
import subprocess
import sys

import numpy as np

from benchmarks import png_encoding as benchmark
from esrgan_jax.data import png
from tests import REPO_ROOT

EIGHT_BIT_ENCODERS = {"png.write_png", "pillow", "up/default", "up/filtered", "paeth/filtered"}


def test_command_writes_rows_of_files_that_decode_to_their_pixels(tmp_path):
  out = tmp_path / "rows.json"
  run = subprocess.run([sys.executable, "-m", "benchmarks.png_encoding", "--size", "40x56",
                        "--repeats", "1", "--json", str(out)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode == 0, run.stdout + run.stderr
  assert "FAILURE" not in run.stdout
  rows = json.loads(out.read_text())
  by_image = {}
  for r in rows:
    by_image.setdefault(r["image"], set()).add(r["encoder"])
    assert r["same_pixels"] is True, r
    assert r["bytes"] > 0 and r["seconds"] >= 0, r
    assert r["shape"][:2] == [40, 56], r
  assert by_image == {"mosaic": EIGHT_BIT_ENCODERS, "smooth": EIGHT_BIT_ENCODERS,
                      "smooth+noise": EIGHT_BIT_ENCODERS,
                      "smooth 16-bit": EIGHT_BIT_ENCODERS - {"pillow"}}
  # png.py's 16-bit setting is 'Up' with the default strategy: the variant writes the same bytes.
  sizes = {(r["image"], r["encoder"]): r["bytes"] for r in rows}
  assert sizes["smooth 16-bit", "png.write_png"] == sizes["smooth 16-bit", "up/default"]


def test_a_file_with_other_pixels_is_reported(monkeypatch, capsys):
  def off_by_one(f, image):
    png.write_png(f, image + 1)
  monkeypatch.setattr(benchmark, "encoders",
                      lambda image: {"png.write_png": png.write_png, "wrong": off_by_one})
  [good, bad] = benchmark.measure("zeros", np.zeros((5, 7, 3), np.uint8), repeats=1)
  assert good["same_pixels"] is True and bad["same_pixels"] is False
  assert benchmark.main(["--size", "8x12", "--repeats", "1"]) == 1
  out = capsys.readouterr().out
  assert "FAILURE: mosaic / wrong does not decode" in out
  assert "FAILURE: mosaic / png.write_png" not in out
