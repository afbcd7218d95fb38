"""The upscaler's last lines and its refusals before the work (issue #27): what was written
where, counts right when stderr is a pipe, --max_pixels and --outscale refused from the header
in one line, nothing created when the checkpoint is missing (nor left when nothing was written),
`--tile 0` refused past the memory available, no raw Pillow warning."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from esrgan_jax import upscale
from esrgan_jax.data import images
from esrgan_jax.data.images import read_header, write_image
from esrgan_jax.inference import output_limits, whole_image
from tests import REPO_ROOT
from tests.tiny_generator import saved_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  return saved_tiny_checkpoint(tmp_path_factory)


def _image(path, height=8, width=8):
  write_image(path, np.full((height, width, 3), 100, np.uint8))


def _run(args, capsys):
  code = upscale.main(args)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_counts_with_stderr_a_pipe(checkpoint, tmp_path):
  """No terminal: the progress bars are off, the counts come from what was written."""
  _image(tmp_path / "in" / "a.png")
  (tmp_path / "in" / "b.png").write_bytes(b"garbage")
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-m", "esrgan_jax.upscale", str(tmp_path / "in"),
                         "-o", str(tmp_path / "out"), "--checkpoint", checkpoint],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1, done.stderr
  assert done.stderr.splitlines()[-1] == (
      f"esrgan_jax: error: 1 of 2 image(s) failed; the other 1 are in {tmp_path / 'out'}")
  assert os.listdir(tmp_path / "out") == ["a_out.png"]


def test_success_says_what_was_written_where(checkpoint, tmp_path, capsys):
  _image(tmp_path / "a.png")
  _image(tmp_path / "b.png")
  code, out, err = _run([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                         str(tmp_path / "out"), "--checkpoint", checkpoint], capsys)
  assert code == 0, err
  assert out.splitlines() == [f"wrote 2 image(s) to {tmp_path / 'out'}"]


def test_all_failed_says_no_output_is_complete(checkpoint, tmp_path, capsys):
  (tmp_path / "b.png").write_bytes(b"garbage")
  code, _, err = _run([str(tmp_path / "b.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                       checkpoint], capsys)
  assert code == 1
  assert err.splitlines()[-1] == (
      f"esrgan_jax: error: 1 of 1 image(s) failed; nothing was written to {tmp_path / 'out'}")


def test_missing_checkpoint_creates_nothing(tmp_path, capsys):
  _image(tmp_path / "a.png")
  code, _, err = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "out" / "deep"),
                       "--checkpoint", str(tmp_path / "missing")], capsys)
  assert code == 1 and len(err.splitlines()) == 1 and str(tmp_path / "missing") in err
  assert not os.path.exists(tmp_path / "out")


def test_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
  _image(tmp_path / "a.png")
  (tmp_path / "out").write_text("a file")
  code, _, err = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                       str(tmp_path / "missing")], capsys)
  assert code == 1
  assert err == (f"esrgan_jax: error: {tmp_path / 'out'}: output folder is a file; choose "
                 "another -o\n")


@pytest.mark.parametrize("flags, message", [
    (["--outscale", "1e9"], "--outscale 1e+09 makes outputs of at least 1000000000x1000000000 "
     "pixels, more than --max_pixels 1073741824; use a smaller --outscale"),
    (["--outscale", "1e300"], "--outscale 1e+300 makes outputs of at least"),
    (["--max_pixels", "0"], "--max_pixels must be >= 1, got 0"),
])
def test_impossible_outscale_is_one_line_before_anything(tmp_path, capsys, flags, message):
  _image(tmp_path / "a.png")
  code, _, err = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                       str(tmp_path / "missing")] + flags, capsys)
  assert code == 1 and len(err.splitlines()) == 1
  assert err.startswith(f"esrgan_jax: error: {message}")
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("flags, message, written", [
    (["--max_pixels", "1000"], "8x8 -> 32x32 is 1024 output pixels (0.0 MiB in memory), more "
     "than --max_pixels 1000; raise --max_pixels to upscale it, or lower --outscale", 1),
    (["--outscale", "1e-10"], "8x8 -> 0x0 has no pixels; use a larger --outscale", 0),
])
def test_output_out_of_bounds_is_refused_per_image(checkpoint, tmp_path, capsys, flags, message,
                                                   written):
  _image(tmp_path / "a.png")
  _image(tmp_path / "b.png", 4, 4)  # 16x16 out: under --max_pixels 1000
  code, _, err = _run([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                       str(tmp_path / "out"), "--checkpoint", checkpoint] + flags, capsys)
  assert code == 1
  lines = err.splitlines()
  assert lines[0] == f"esrgan_jax: error: {tmp_path / 'a.png'}: {message}"
  assert lines[-1].startswith(f"esrgan_jax: error: {2 - written} of 2 image(s) failed; ")
  # Nothing written: the -o folder the run created is gone again.
  assert (os.listdir(tmp_path / "out") if written else os.path.exists(tmp_path / "out")) == (
      ["b_out.png"] if written else False)


def test_huge_png_is_refused_from_its_header_without_pillow_warning(checkpoint, tmp_path, capsys):
  """12000 x 12000 (past Pillow's 89 M pixel warning): refused before decoding, in one line."""
  big = Image.new("P", (12000, 12000))
  big.putpalette([0, 0, 0, 255, 255, 255])
  big.save(tmp_path / "big.png")  # 17 KB on disk
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
    code, _, err = _run([str(tmp_path / "big.png"), "-o", str(tmp_path / "out"),
                         "--checkpoint", checkpoint], capsys)
  assert code == 1
  assert err.splitlines() == [
      f"esrgan_jax: error: {tmp_path / 'big.png'}: 12000x12000 -> 48000x48000 is 2304000000 "
      "output pixels (6.4 GiB in memory), more than --max_pixels 1073741824; raise "
      "--max_pixels to upscale it, or lower --outscale",
      f"esrgan_jax: error: 1 of 1 image(s) failed; nothing was written to {tmp_path / 'out'}"]
  with images.no_pillow_pixel_limit():
    assert read_header(tmp_path / "big.png")[:2] == (12000, 12000)


def test_large_output_is_announced_before_the_work(checkpoint, tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(output_limits, "ANNOUNCE_BYTES", 3000)  # a 32x32 RGB output is 3072
  _image(tmp_path / "a.png")
  code, out, err = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                         checkpoint], capsys)
  assert code == 0, err
  assert out.splitlines() == [f"{tmp_path / 'a.png'}: 8x8 -> 32x32, 0.0 MiB in memory",
                              f"wrote 1 image(s) to {tmp_path / 'out'}"]


@pytest.mark.parametrize("mode, expected", [
    ("L", (5, 7, 1, 1)), ("RGB", (5, 7, 3, 1)), ("RGBA", (5, 7, 4, 1)), ("LA", (5, 7, 4, 1)),
    ("I;16", (5, 7, 1, 2)),
])
def test_header_gives_what_the_reader_returns(tmp_path, mode, expected):
  Image.new(mode, (7, 5)).save(tmp_path / "x.png")
  assert tuple(read_header(tmp_path / "x.png")) == expected


@pytest.mark.parametrize("read", [read_header, images.read_image_any])
def test_garbage_named_png_is_one_line_without_a_buffer_address(tmp_path, read):
  (tmp_path / "x.png").write_bytes(b"garbage")
  with pytest.raises(images.ImageReadError) as error:
    read(tmp_path / "x.png")
  assert str(error.value) == (f"{tmp_path / 'x.png'}: not a readable image (no format Pillow "
                              "knows: damaged, or not an image)")


def test_pillow_bomb_warning_is_never_printed(tmp_path):
  """Past 89 M pixels Pillow warned in its own words on stderr (metrics, prepare, degrade read
  such files too); the commands state sizes in theirs."""
  big = Image.new("P", (10000, 10000))
  big.putpalette([0, 0, 0, 255, 255, 255])
  big.save(tmp_path / "big.png")
  code = ("from esrgan_jax.data import images; "
          f"print(images.read_header({str(tmp_path / 'big.png')!r}))")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0 and done.stderr == "", done.stderr
  assert done.stdout == "ImageHeader(height=10000, width=10000, channels=3, itemsize=1)\n"


def test_a_run_that_wrote_nothing_leaves_no_output_folder(checkpoint, tmp_path, capsys):
  """Every image refused: the folders the run created for -o are removed again."""
  _image(tmp_path / "a.png")
  out = tmp_path / "new" / "out"
  code, _, err = _run([str(tmp_path / "a.png"), "-o", str(out), "--checkpoint", checkpoint,
                       "--max_pixels", "1000"], capsys)
  assert code == 1
  assert err.splitlines()[-1] == (
      f"esrgan_jax: error: 1 of 1 image(s) failed; nothing was written to {out}")
  assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_an_output_folder_the_user_had_is_kept(checkpoint, tmp_path, capsys):
  _image(tmp_path / "a.png")
  (tmp_path / "out").mkdir()
  code, _, _ = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                     checkpoint, "--max_pixels", "1000"], capsys)
  assert code == 1 and os.listdir(tmp_path / "out") == []


def test_some_refused_keeps_the_folder_with_what_was_written(checkpoint, tmp_path, capsys):
  _image(tmp_path / "a.png")
  _image(tmp_path / "b.png", 4, 4)
  out = tmp_path / "new" / "out"
  code, _, err = _run([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out),
                       "--checkpoint", checkpoint, "--max_pixels", "1000"], capsys)
  assert code == 1
  assert err.splitlines()[-1] == (
      f"esrgan_jax: error: 1 of 2 image(s) failed; the other 1 are in {out}")
  assert os.listdir(out) == ["b_out.png"]


def test_tile_0_past_the_memory_available_is_refused_per_image(checkpoint, tmp_path, capsys,
                                                               monkeypatch):
  """An injected 400 kB: the 8x8 image's whole call fits, the 32x24 one's does not."""
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 400_000)
  _image(tmp_path / "a.png", 24, 32)
  _image(tmp_path / "b.png")
  code, _, err = _run([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                       str(tmp_path / "out"), "--checkpoint", checkpoint, "--tile", "0"], capsys)
  assert code == 1
  lines = err.splitlines()
  assert lines[0] == (
      f"esrgan_jax: error: {tmp_path / 'a.png'}: --tile 0 runs each 32x24 image whole through "
      "the network (1 a call), which needs about 1.0 MiB of memory, more than the 0.4 MiB "
      "available; use --tile 32 to upscale it in tiles")
  assert lines[1:] == [f"esrgan_jax: error: 1 of 2 image(s) failed; the other 1 are in "
                       f"{tmp_path / 'out'}"]
  assert os.listdir(tmp_path / "out") == ["b_out.png"]
  # The same with tiles: nothing refused.
  code, _, err = _run([str(tmp_path / "a.png"), "-o", str(tmp_path / "tiled"), "--checkpoint",
                       checkpoint, "--tile", "16"], capsys)
  assert code == 0, err
