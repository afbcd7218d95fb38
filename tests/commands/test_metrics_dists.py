"""python -m esrgan_jax.metrics --metrics dists, from a converted DISTS directory."""

import json

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from esrgan_jax.metrics import cli
from esrgan_jax.metrics.dists import DistsMetric
from esrgan_jax.weights.dists import dists_param_shapes, save_dists


def random_dists_dir(path, seed=0):
  """He-normal convs, small biases and positive alpha/beta, saved as convert --dists does."""
  rng = np.random.default_rng(seed)

  def draw(shape):
    if len(shape) == 4:
      return rng.normal(0, np.sqrt(2 / np.prod(shape[:3])), shape).astype(np.float32)
    return np.abs(rng.normal(0, 0.05, shape)).astype(np.float32)

  save_dists(path, jax.tree.map(draw, dists_param_shapes(), is_leaf=lambda x: isinstance(x, tuple)))


@pytest.fixture
def folders(tmp_path):
  sr, hr = tmp_path / "sr", tmp_path / "hr"
  sr.mkdir(), hr.mkdir()
  rng = np.random.default_rng(0)
  for k, photo in enumerate([skimage.data.astronaut(), skimage.data.chelsea()]):
    image = photo[:40, :48]
    noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(hr / f"p{k}.png")
    Image.fromarray(noisy).save(sr / f"p{k}.png")
  return sr, hr


def run_error(argv, capsys):
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert "\n" not in err, err
  return err


def test_dists_from_a_converted_directory(folders, tmp_path, capsys):
  sr, hr = folders
  random_dists_dir(tmp_path / "dists")
  out = tmp_path / "out.json"
  assert cli.main(["--sr", str(sr), "--hr", str(hr), "--metrics", "psnr,dists",
                   "--dists_weights", str(tmp_path / "dists"), "--json", str(out)]) == 0
  assert "dists ↓" in capsys.readouterr().out
  result = json.loads(out.read_text())
  assert result["metrics"]["dists"] == {"higher_is_better": False}
  assert result["settings"]["dists_weights"] == str(tmp_path / "dists")
  metric = DistsMetric.from_dir(tmp_path / "dists")
  for row in result["images"]:
    expected = metric(np.asarray(Image.open(row["sr"])), np.asarray(Image.open(row["hr"])))
    assert row["dists"] == pytest.approx(expected, rel=1e-6) and expected > 0


def test_dists_errors_are_one_line(folders, tmp_path, capsys):
  sr, hr = folders
  base = ["--sr", str(sr), "--hr", str(hr), "--metrics", "dists"]
  assert "--dists_weights DIR" in run_error(base, capsys)
  assert "no such DISTS directory" in run_error(
      base + ["--dists_weights", str(tmp_path / "none")], capsys)
  random_dists_dir(tmp_path / "dists")
  small_sr, small_hr = tmp_path / "small_sr", tmp_path / "small_hr"
  small_sr.mkdir(), small_hr.mkdir()
  image = skimage.data.astronaut()[:16, :30]
  Image.fromarray(image).save(small_sr / "s.png")
  Image.fromarray(image).save(small_hr / "s.png")
  err = run_error(["--sr", str(small_sr), "--hr", str(small_hr), "--metrics", "dists",
                   "--dists_weights", str(tmp_path / "dists")], capsys)
  assert f"{small_sr / 's.png'}: dists:" in err and "at least 17x17 pixels, got 16x30" in err
