"""Tests of `python -m esrgan_jax.prepare` and of the pipeline reading what it writes."""

import json
import os

import numpy as np
import pytest

from configs import default
from esrgan_jax import cli, config_checks, prepare
from esrgan_jax.data import datasets, pipeline, prepared
from esrgan_jax.data.images import read_image, write_image

SCALE = 4


def random_image(rng, height, width):
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference_starts(length, crop_size, step, thresh_size):
  """extract_subimages.py's grid, written out from its description, plus the whole-axis rule."""
  if length <= crop_size:
    return [0]
  starts, position = [], 0
  while position + crop_size <= length:
    starts.append(position)
    position += step
  if length - starts[-1] - crop_size > thresh_size:
    starts.append(length - crop_size)
  return starts


@pytest.mark.parametrize("length,crop,step,thresh", [
    (1356, 480, 240, 0), (2040, 480, 240, 0), (960, 480, 240, 0), (1000, 480, 240, 50),
    (1000, 480, 240, 30), (300, 480, 240, 0), (481, 480, 240, 0), (48, 16, 16, 0)])
def test_window_grid_is_basicsr_s(length, crop, step, thresh):
  starts = prepare.window_starts(length, crop, step, thresh)
  assert starts == reference_starts(length, crop, step, thresh)
  covered = np.zeros(length, bool)
  for start in starts:
    covered[start:start + crop] = True
  # thresh_size 0 covers every pixel; otherwise at most thresh_size are left at the far border.
  assert (~covered).sum() <= thresh


def test_sub_images_are_written_in_row_major_order_with_basicsr_names(tmp_path):
  rng = np.random.default_rng(0)
  image = random_image(rng, 40, 56)
  write_image(str(tmp_path / "src" / "pic.png"), image)
  manifest = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), crop_size=24, step=16)
  tops, lefts = [0, 16], [0, 16, 32]
  assert manifest["files"] == [f"pic_s{n:03d}.png" for n in range(1, 7)]
  for name, (top, left) in zip(manifest["files"], [(t, l) for t in tops for l in lefts]):
    np.testing.assert_array_equal(read_image(str(tmp_path / "out" / name)),
                                  image[top:top + 24, left:left + 24])
  on_disk = json.loads((tmp_path / "out" / prepare.MANIFEST).read_text())
  assert on_disk["files"] == manifest["files"] and on_disk["crop_size"] == 24


@pytest.mark.parametrize("image_format,bicubic_lr", [("png", False), ("npy", False), ("png", True)])
def test_prepared_source_yields_the_folder_sources_patches(tmp_path, image_format, bicubic_lr):
  # crop_size >= every image: each image is its own one sub-image, so for one seed and step both
  # sources must give the same batches, bit for bit, cached or decoded per use; LR sub-images made
  # at preparation must be the pixels the folder path's on-the-fly bicubic makes.
  rng = np.random.default_rng(1)
  for i, (height, width) in enumerate([(40, 52), (48, 40), (36, 44), (44, 60), (53, 38)]):
    write_image(str(tmp_path / "src" / f"{i:02d}.png"), random_image(rng, height, width))
  manifest = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), crop_size=64, step=32,
                             image_format=image_format, num_workers=2,
                             scale=SCALE if bicubic_lr else None)
  assert ("lr_files" in manifest) == bicubic_lr
  for cache_decoded in (False, True):
    batches = {}
    for dataset, fields in (("folder", {"hr_dir": str(tmp_path / "src")}),
                            ("prepared", {"prepared_dir": str(tmp_path / "out")})):
      config = default.data_config()
      config.update(dataset=dataset, patch_size=16, cache_decoded=cache_decoded,
                    num_workers=2, min_images_per_slot=1, **fields)
      iterator = pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=4,
                                                seed=3, start_step=5, process_index=0,
                                                process_count=1)
      with iterator:
        batches[dataset] = [next(iterator) for _ in range(3)]
    for folder_batch, prepared_batch in zip(batches["folder"], batches["prepared"]):
      for key in ("lr", "hr"):
        np.testing.assert_array_equal(folder_batch[key], prepared_batch[key])


def write_pairs(tmp_path, rng, sizes):
  for i, (lr_h, lr_w) in enumerate(sizes):
    # HR a few rows/columns larger than scale x LR, as in BasicSR's GTmod12 folders.
    write_image(str(tmp_path / "hr" / f"{i:02d}.png"),
                random_image(rng, lr_h * SCALE + 2, lr_w * SCALE + 1))
    write_image(str(tmp_path / "lr" / f"{i:02d}x{SCALE}.png"), random_image(rng, lr_h, lr_w))


def test_lr_sub_images_are_the_lr_grid_and_hr_windows_are_scale_times_it(tmp_path):
  rng = np.random.default_rng(4)
  write_pairs(tmp_path, rng, [(22, 30)])
  manifest = prepare.prepare(str(tmp_path / "hr"), str(tmp_path / "out"), crop_size=40, step=24,
                             thresh_size=4, lr_dir=str(tmp_path / "lr"), scale=SCALE)
  hr = read_image(str(tmp_path / "hr" / "00.png"))
  lr = read_image(str(tmp_path / "lr" / f"00x{SCALE}.png"))
  windows = [(t, l) for t in reference_starts(22, 10, 6, 1) for l in reference_starts(30, 10, 6, 1)]
  assert len(manifest["files"]) == len(windows) == len(manifest["lr_files"])
  for name, lr_name, (top, left) in zip(manifest["files"], manifest["lr_files"], windows):
    np.testing.assert_array_equal(read_image(str(tmp_path / "out" / lr_name)),
                                  lr[top:top + 10, left:left + 10])
    hr_window = hr[top * SCALE:(top + 10) * SCALE, left * SCALE:(left + 10) * SCALE]
    np.testing.assert_array_equal(read_image(str(tmp_path / "out" / name)), hr_window)


def test_prepared_pairs_yield_the_folder_pairs_patches(tmp_path):
  rng = np.random.default_rng(5)
  write_pairs(tmp_path, rng, [(10, 12), (12, 9), (11, 11)])
  prepare.prepare(str(tmp_path / "hr"), str(tmp_path / "out"), crop_size=64, step=32,
                  image_format="npy", lr_dir=str(tmp_path / "lr"), scale=SCALE)
  batches = {}
  for dataset, fields in (("folder", {"hr_dir": str(tmp_path / "hr"),
                                      "lr_dir": str(tmp_path / "lr")}),
                          ("prepared", {"prepared_dir": str(tmp_path / "out")})):
    config = default.data_config()
    config.update(dataset=dataset, patch_size=16, cache_decoded=False, num_workers=2,
                  min_images_per_slot=1, **fields)
    with pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=3, seed=9,
                                        start_step=2, process_index=0,
                                        process_count=1) as iterator:
      batches[dataset] = [next(iterator) for _ in range(2)]
  for folder_batch, prepared_batch in zip(batches["folder"], batches["prepared"]):
    for key in ("lr", "hr"):
      np.testing.assert_array_equal(folder_batch[key], prepared_batch[key])


def test_prepared_batches_do_not_depend_on_the_number_of_processes(tmp_path):
  rng = np.random.default_rng(2)
  write_image(str(tmp_path / "src" / "big.png"), random_image(rng, 96, 128))
  prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), crop_size=32, step=32)

  def batch(process_index, process_count):
    config = default.data_config()
    config.update(dataset="prepared", prepared_dir=str(tmp_path / "out"), patch_size=16,
                  cache_decoded=False, num_workers=1, min_images_per_slot=1)
    with pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=4, seed=7,
                                        start_step=11, process_index=process_index,
                                        process_count=process_count) as iterator:
      return next(iterator)

  whole = batch(0, 1)
  halves = [batch(0, 2), batch(1, 2)]
  for key in ("lr", "hr"):
    np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]))


def test_unreadable_images_are_skipped_with_a_warning(tmp_path, capsys):
  write_image(str(tmp_path / "src" / "good.png"), np.zeros((20, 20, 3), np.uint8))
  (tmp_path / "src" / "bad.png").write_bytes(b"not a png")
  assert prepare.main([str(tmp_path / "src"), str(tmp_path / "out"), "--crop_size", "480"]) == 0
  captured = capsys.readouterr()
  assert "warning: skipping unreadable image" in captured.err and "bad.png" in captured.err
  assert "1 unreadable images skipped" in captured.out
  manifest = json.loads((tmp_path / "out" / prepare.MANIFEST).read_text())
  assert manifest["files"] == ["good_s001.png"]


def one_error_line(capsys):
  *warnings, last = capsys.readouterr().err.strip().splitlines()
  assert last.startswith("esrgan_jax: error: "), last
  assert all(line.startswith("esrgan_jax: warning: ") for line in warnings), warnings
  return last


def test_bad_src_and_out_are_one_line_errors(tmp_path, capsys):
  out = str(tmp_path / "out")
  assert prepare.main([str(tmp_path / "missing"), out]) == cli.EXIT_ERROR
  assert "missing" in one_error_line(capsys)
  (tmp_path / "empty").mkdir()
  assert prepare.main([str(tmp_path / "empty"), out]) == cli.EXIT_ERROR
  assert "no image files" in one_error_line(capsys)
  (tmp_path / "src").mkdir()
  (tmp_path / "src" / "bad.png").write_bytes(b"junk")
  assert prepare.main([str(tmp_path / "src"), out]) == cli.EXIT_ERROR
  assert "none of its 1 images is readable" in one_error_line(capsys)
  write_image(str(tmp_path / "src" / "good.png"), np.zeros((8, 8, 3), np.uint8))
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "x").write_text("")
  assert prepare.main([str(tmp_path / "src"), str(tmp_path / "taken")]) == cli.EXIT_ERROR
  assert "not empty" in one_error_line(capsys)
  if os.geteuid() != 0:  # root writes anywhere
    (tmp_path / "locked").mkdir(mode=0o500)
    assert prepare.main([str(tmp_path / "src"), str(tmp_path / "locked" / "o")]) == cli.EXIT_ERROR
    assert "cannot write" in one_error_line(capsys)
  assert prepare.main([str(tmp_path / "src"), out, "--step", "0"]) == cli.EXIT_ERROR
  assert "--step" in one_error_line(capsys)
  assert prepare.main([str(tmp_path / "src"), out, "--lr_dir", str(tmp_path)]) == cli.EXIT_ERROR
  assert "--scale" in one_error_line(capsys)
  assert prepare.main([str(tmp_path / "src"), out, "--scale", "7"]) == cli.EXIT_ERROR
  assert "--scale (7) must be a positive divisor" in one_error_line(capsys)
  assert prepare.main([str(tmp_path / "src"), out, "--lr_dir", str(tmp_path / "empty"),
                       "--scale", "4"]) == cli.EXIT_ERROR
  assert "--lr_dir" in one_error_line(capsys)
  with pytest.raises(SystemExit) as exit_info:
    prepare.main([str(tmp_path / "src"), out, "--format", "lmdb"])
  assert exit_info.value.code == cli.EXIT_USAGE


def test_pipeline_names_a_missing_manifest_or_field(tmp_path):
  config = default.data_config()
  config.update(dataset="prepared", prepared_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="prepared.json.*esrgan_jax.prepare"):
    pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=2, seed=0,
                                   process_index=0, process_count=1)
  unset = default.get_config()
  unset.data.dataset = "prepared"
  with pytest.raises(config_checks.ConfigError, match="config.data.prepared_dir: set it"):
    config_checks.validate(unset, 1)
  write_image(str(tmp_path / "src" / "a.png"), np.zeros((16, 16, 3), np.uint8))
  prepare.prepare(str(tmp_path / "src"), str(tmp_path / "x4"), scale=4)
  with pytest.raises(ValueError, match="x4 LR sub-images but the model's scale is 2"):
    prepared.prepared_source(str(tmp_path / "x4"), 2)


def test_manifest_errors_are_one_line_user_errors(tmp_path):
  (tmp_path / "out").mkdir()
  with pytest.raises(datasets.DatasetNotFoundError, match="config.data.prepared_dir"):
    prepared.prepared_source(str(tmp_path / "out"))
  (tmp_path / "out" / prepared.MANIFEST).write_text("{not json")
  with pytest.raises(prepared.PreparedDataError, match="not a readable manifest"):
    prepared.prepared_source(str(tmp_path / "out"))
  (tmp_path / "out" / prepared.MANIFEST).write_text(json.dumps({"files": []}))
  with pytest.raises(prepared.PreparedDataError, match="lists no sub-images"):
    prepared.prepared_source(str(tmp_path / "out"))
  write_image(str(tmp_path / "src" / "a.png"), np.zeros((16, 16, 3), np.uint8))
  prepare.prepare(str(tmp_path / "src"), str(tmp_path / "x4"), scale=4)
  with pytest.raises(cli.ConfigError, match="config.data.prepared_dir="):
    prepared.prepared_source(str(tmp_path / "x4"), 2)
  assert issubclass(prepared.PreparedDataError, cli.UserError)


@pytest.mark.parametrize("flags, message", [
    (["--num_workers", "-3"], "--num_workers must be >= 0 (0: one per CPU, at most 16), got -3"),
    (["--scale", "0", "--lr_dir", "LR"], "--scale (0) must be a positive divisor of --crop_size "
     "(480) and --step (240)"),
])
def test_flags_out_of_range_are_one_line_errors(tmp_path, capsys, flags, message):
  """--num_workers -3 was a ValueError traceback from the thread pool; --scale 0 was told to
  give --scale."""
  write_image(str(tmp_path / "src" / "a.png"), np.zeros((8, 8, 3), np.uint8))
  flags = [str(tmp_path / "src") if flag == "LR" else flag for flag in flags]
  assert prepare.main([str(tmp_path / "src"), str(tmp_path / "out")] + flags) == cli.EXIT_ERROR
  assert one_error_line(capsys) == f"esrgan_jax: error: {message}"
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("out_exists", [False, True])
def test_a_failed_run_removes_what_it_wrote_and_can_be_run_again(tmp_path, capsys, out_exists):
  """A pair of the wrong size, found after the first image was cut: OUT is as before, and the
  same command works once the pair is fixed (it refuses a non-empty OUT)."""
  for name, lr_side in (("a", 4), ("b", 3)):
    write_image(str(tmp_path / "hr" / f"{name}.png"), np.zeros((16, 16, 3), np.uint8))
    write_image(str(tmp_path / "lr" / f"{name}.png"), np.zeros((lr_side, lr_side, 3), np.uint8))
  out = tmp_path / "out"
  if out_exists:
    out.mkdir()
  argv = [str(tmp_path / "hr"), str(out), "--lr_dir", str(tmp_path / "lr"), "--scale", "4",
          "--num_workers", "1", "--crop_size", "8", "--step", "8"]
  assert prepare.main(argv) == cli.EXIT_ERROR
  assert "b.png" in one_error_line(capsys)
  if out_exists:
    assert os.listdir(out) == []
  else:
    assert not os.path.exists(out)
  write_image(str(tmp_path / "lr" / "b.png"), np.zeros((4, 4, 3), np.uint8))
  assert prepare.main(argv) == 0
  assert "wrote 8 sub-images of 2 images" in capsys.readouterr().out
