"""python -m esrgan_jax.degrade: LR PNGs of a folder, reproducible by seed; one-line errors."""

import logging
import os

import numpy as np
import pytest

from configs import realesrnet_x4plus
from esrgan_jax import degrade
from esrgan_jax.data.eval_sets import create_eval_sets, eval_lr_sources
from esrgan_jax.data.images import read_image, write_image


def _photos(folder, n=2, size=(36, 32)):
  rng = np.random.default_rng(0)
  for i in range(n):
    ramp = np.linspace(0, 255, size[1])[None, :, None] * np.ones(size + (3,))
    write_image(os.path.join(folder, f"img{i}.png"),
                np.clip(ramp + rng.normal(0, 10, size + (3,)), 0, 255).astype(np.uint8))


def test_writes_reproducible_lr_images_and_reports_a_bad_file(tmp_path, capsys):
  src = tmp_path / "gt"
  src.mkdir()
  _photos(str(src))
  # Sorted last, so that removing it keeps the other images' slots (their listing index).
  (src / "zz_broken.png").write_bytes(b"not a png")
  status = degrade.main([str(src), str(tmp_path / "a"), "--seed", "3", "--suffix", "lr"])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 1
  assert len(err) == 1 and err[0].startswith("esrgan_jax: error: ") and "zz_broken.png" in err[0]
  first = read_image(tmp_path / "a" / "img0_lr.png")
  assert first.shape == (9, 8, 3)
  assert sorted(os.listdir(tmp_path / "a")) == ["img0_lr.png", "img1_lr.png"]
  os.remove(src / "zz_broken.png")
  assert degrade.main([str(src), str(tmp_path / "b"), "--seed", "3", "--suffix", "lr"]) == 0
  assert capsys.readouterr().out == (
      f"degrading 2 image(s) from {src} (x4, seed 3); each new image size compiles its program "
      f"first\nwrote 2 degraded image(s) to {tmp_path / 'b'} (x4, seed 3)\n")
  np.testing.assert_array_equal(read_image(tmp_path / "b" / "img0_lr.png"), first)
  # Slots differ per image: the two images get different degradations.
  assert not np.array_equal(read_image(tmp_path / "b" / "img1_lr.png"), first)


def test_a_progress_bar_counts_the_images(tmp_path, monkeypatch):
  src = tmp_path / "gt"
  src.mkdir()
  _photos(str(src), n=3)
  bars = []

  def recording_tqdm(items, **kwargs):
    bars.append(kwargs)
    for item in items:
      bars.append(item)
      yield item

  monkeypatch.setattr(degrade, "tqdm", recording_tqdm)
  assert degrade.main([str(src), str(tmp_path / "out")]) == 0
  # disable=None: drawn on a terminal only, like upscale's bars.
  assert bars[0]["unit"] == "image" and bars[0]["disable"] is None
  # Each item is (input, output): the bar goes over the planned pairs.
  assert [os.path.basename(p) for p, _ in bars[1:]] == ["img0.png", "img1.png", "img2.png"]
  assert [os.path.dirname(o) for _, o in bars[1:]] == [str(tmp_path / "out")] * 3


@pytest.mark.parametrize("case", ["missing", "empty", "unwritable"])
def test_folder_errors_are_one_line(tmp_path, capsys, case):
  src = tmp_path / "gt"
  out = tmp_path / "out"
  if case != "missing":
    src.mkdir()
  if case == "unwritable":
    _photos(str(src), n=1)
    out.write_text("a file where the folder should be")
  status = degrade.main([str(src), str(out)])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 1 and len(err) == 1 and err[0].startswith("esrgan_jax: error: ")
  assert str(out if case == "unwritable" else src) in err[0]


def test_malformed_command_line_exits_2(tmp_path):
  with pytest.raises(SystemExit) as e:
    degrade.main([str(tmp_path), str(tmp_path), "--scale", "3"])
  assert e.value.code == 2


@pytest.mark.parametrize("seed", ["4294967296", "-1", "x"])
def test_seed_outside_32_bits_is_a_usage_error(tmp_path, capsys, seed):
  with pytest.raises(SystemExit) as e:
    degrade.main([str(tmp_path), str(tmp_path / "out"), "--seed", seed])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "--seed: must be an integer from 0 to 4294967295" in err
  assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_real_world_eval_sets_are_what_the_command_writes(tmp_path, caplog):
  """config.data.eval_lr='degradation': a set without lr_dir gets the LR that `python -m
  esrgan_jax.degrade HR OUT --seed eval_lr_seed` writes; a set with one keeps its files."""
  hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
  hr_dir.mkdir()
  _photos(str(hr_dir), size=(38, 33))  # not multiples of 4: mod-cropped to 36 x 32
  # Listed first: the command gives it slot 0 and img0, img1 slots 1, 2; so must the eval set.
  (hr_dir / "aa_broken.png").write_bytes(b"not a png")
  assert degrade.main([str(hr_dir), str(lr_dir), "--seed", "5"]) == 1
  config = realesrnet_x4plus.get_config("demo")
  config.data.update(eval_lr_seed=5, on_bad_image="skip",
                     eval_sets={"plain": {"hr_dir": str(hr_dir)},
                                "paired": {"hr_dir": str(hr_dir),
                                           "lr_dir": str(tmp_path / "given")}})
  (tmp_path / "given").mkdir()
  for name in ("aa_broken", "img0", "img1"):
    write_image(tmp_path / "given" / f"{name}.png", np.full((9, 8, 3), 7, np.uint8))
  # absl's logger too: a session fixture of another test on this worker may have left it at
  # WARNING (tests/conftest.py's compilation cache).
  with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
    sets = create_eval_sets(config.data, scale=4, degradation=config.degradation)
  # A line before the slow part (the paired set reads its LR files instead).
  assert [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()] == [
      "Making the degraded evaluation LR of plain (3 images)..."]
  assert [image.name for image in sets["plain"]] == ["img0", "img1"]
  for i, image in enumerate(sets["plain"]):
    assert image.hr.shape == (36, 32, 3)
    np.testing.assert_array_equal(image.lr, read_image(lr_dir / f"img{i}.png"))
  assert all(np.all(image.lr == 7) for image in sets["paired"])
  assert eval_lr_sources(config.data) == {"plain": "degradation, seed 5",
                                                   "paired": f"files in {tmp_path / 'given'}"}
  config.data.eval_lr = "bicubic"
  bicubic = create_eval_sets(config.data, scale=4)["plain"]
  assert eval_lr_sources(config.data)["plain"] == "bicubic"
  assert not np.array_equal(bicubic[0].lr, sets["plain"][0].lr)


@pytest.mark.parametrize("case", ["same_folder", "two_extensions"])
def test_outputs_that_would_replace_an_input_or_each_other_are_refused(tmp_path, capsys, case):
  """`degrade gt gt` once wrote each LR over its GT image; nothing is written now."""
  src = tmp_path / "gt"
  _photos(str(src), n=1)
  before = read_image(src / "img0.png")
  out = src if case == "same_folder" else tmp_path / "out"
  if case == "two_extensions":
    write_image(src / "img0.jpg", before)
  status = degrade.main([str(src), str(out)])
  err = capsys.readouterr().err
  expected = {
      "same_folder": f"{src / 'img0.png'}: would replace the input image {src / 'img0.png'}; "
                     "choose another OUT_DIR or a --suffix",
      "two_extensions": f"{src / 'img0.jpg'} and {src / 'img0.png'} would both be written to "
                        f"{out / 'img0.png'}; degrade them into different folders"}[case]
  assert status == 1 and err == f"esrgan_jax: error: {expected}\n"
  np.testing.assert_array_equal(read_image(src / "img0.png"), before)
  assert not os.path.exists(tmp_path / "out")
