"""Tests of the data sources: bundled photos, folder pairing, evaluation sets, DIV2K via TFDS."""

import os

import ml_collections
import numpy as np
import pytest

from configs import default, esrgan_psnr
from esrgan_jax import cli, config_checks
from esrgan_jax.data import datasets, images, pipeline
from esrgan_jax.data.bicubic import bicubic_downsample_uint8
from esrgan_jax.data.eval_sets import create_eval_sets
from esrgan_jax.data.images import read_image, write_image

SCALE = 4


def random_image(rng, height, width):
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Bundled photographs.


def test_bundled_photos_ship_with_scikit_image_and_hold_out_two():
  train = datasets.bundled_photo_paths(datasets.BUNDLED_TRAIN_PHOTOS
                                       + datasets.BUNDLED_FLAT_PHOTOS)
  held_out = datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS)
  assert len(held_out) == 2 and not set(train) & set(held_out)
  for path in train + held_out:
    image = read_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert min(image.shape[:2]) >= 128  # Large enough for the paper's HR patch.
    assert image.std() > 10  # A photograph, not a flat test card.


def test_default_eval_set_is_the_held_out_photos_with_matlab_bicubic_lr():
  config = default.data_config()
  eval_sets = create_eval_sets(config, scale=SCALE)
  assert list(eval_sets) == ["bundled"]
  names = [image.name for image in eval_sets["bundled"]]
  assert names == [os.path.splitext(name)[0] for name in datasets.BUNDLED_EVAL_PHOTOS]
  for image, photo in zip(eval_sets["bundled"], datasets.BUNDLED_EVAL_PHOTOS):
    original = read_image(datasets.bundled_photo_paths([photo])[0])
    height, width = original.shape[0] // SCALE * SCALE, original.shape[1] // SCALE * SCALE
    np.testing.assert_array_equal(image.hr, original[:height, :width])  # BasicSR's mod crop.
    np.testing.assert_array_equal(image.lr, bicubic_downsample_uint8(image.hr, SCALE))
  config.eval_max_images = 1
  assert len(create_eval_sets(config, scale=SCALE)["bundled"]) == 1


# ------------------------------------------------------------------------------------------------
# Folders in the Set5 / DIV2K / Urban100 layouts.


def test_lr_files_are_matched_by_the_usual_naming_schemes(tmp_path):
  for name in ("baby.png", "0001.png", "img_001_SRF_4_HR.png"):
    write_image(str(tmp_path / "hr" / name), np.zeros((8, 8, 3), np.uint8))
  for name in ("baby.png", "0001x4.png", "img_001_SRF_4_LR.png", "unrelated.png"):
    write_image(str(tmp_path / "lr" / name), np.zeros((2, 2, 3), np.uint8))
  hr_paths = sorted(str(tmp_path / "hr" / name)
                    for name in ("baby.png", "0001.png", "img_001_SRF_4_HR.png"))
  lr_paths = datasets.match_lr_paths(hr_paths, str(tmp_path / "lr"), SCALE)
  assert [os.path.basename(p) for p in lr_paths] == ["0001x4.png", "baby.png",
                                                     "img_001_SRF_4_LR.png"]
  write_image(str(tmp_path / "hr" / "orphan.png"), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(FileNotFoundError, match=r"orphan\.png: no LR image"):
    datasets.match_lr_paths([str(tmp_path / "hr" / "orphan.png")], str(tmp_path / "lr"), SCALE)


def eval_config(**sets):
  config = default.data_config()
  config.eval_sets = ml_collections.ConfigDict(sets)
  return config


def test_every_training_source_has_the_one_interface(tmp_path):
  """Folders, bundled photos and prepared folders are ImageSources (one implementation over
  their paths); TFDS has its own class with the same `Source` interface."""
  import json
  from esrgan_jax.data import prepared
  rng = np.random.default_rng(0)
  for name in ("a", "b"):
    write_image(str(tmp_path / "hr" / f"{name}.png"), random_image(rng, 8, 8))
    write_image(str(tmp_path / "lr" / f"{name}.png"), random_image(rng, 2, 2))
  np.save(tmp_path / "hr" / "c.npy", random_image(rng, 8, 8))
  (tmp_path / "hr" / prepared.MANIFEST).write_text(json.dumps(
      {"files": ["a.png", "c.npy"], "lr_files": ["../lr/a.png", "../lr/b.png"], "scale": SCALE}))
  folder = datasets.folder_source(str(tmp_path / "hr"), str(tmp_path / "lr"), SCALE)
  sub_images = prepared.prepared_source(str(tmp_path / "hr"), SCALE)
  for source in (folder, sub_images, datasets.bundled_source()):
    assert isinstance(source, datasets.ImageSource)
  assert datasets.Source in datasets.TfdsSource.__mro__ and datasets.Source in type(folder).__mro__
  assert (folder.num_images, sub_images.num_images) == (2, 2)
  assert sub_images.name(1) == str(tmp_path / "hr" / "c.npy")
  assert sub_images.lr_name(1) == str(tmp_path / "hr" / "../lr/b.png")
  hr, lr = sub_images.load(1)
  np.testing.assert_array_equal(hr, np.load(tmp_path / "hr" / "c.npy"))
  np.testing.assert_array_equal(lr, read_image(str(tmp_path / "lr" / "b.png")))
  assert datasets.bundled_source().lr_name(0).startswith("bicubic LR of ")


def test_bundled_photos_selects_training_photos_by_name():
  every = datasets.bundled_source()
  assert every.num_images == len(datasets.BUNDLED_TRAIN_PHOTOS)  # not the grayscale flat ones
  flat = datasets.bundled_source(datasets.BUNDLED_FLAT_PHOTOS)
  assert flat.num_images == 3 and flat.load(0)[0].shape[-1] == 3  # grayscale read as RGB
  some = datasets.bundled_source(("ihc.png", "coffee.png"))
  assert sorted(os.path.basename(some.name(i)) for i in range(2)) == ["coffee.png", "ihc.png"]
  assert some.num_images == 2
  with pytest.raises(cli.ConfigError, match=r"config\.data\.bundled_photos: rocket\.jpg not "
                     r"among the bundled training photos"):
    datasets.bundled_source(("rocket.jpg",))  # held out for evaluation


def test_eval_sets_from_folders_with_and_without_lr(tmp_path):
  rng = np.random.default_rng(0)
  hr_sizes = {"baby": (50, 42), "bird": (33, 36)}  # 50x42: not a multiple of 4 (mod crop).
  for name, (height, width) in hr_sizes.items():
    hr = random_image(rng, height, width)
    write_image(str(tmp_path / "Set5" / "HR" / f"{name}.png"), hr)
    # LR made from the mod-cropped HR, as BasicSR's LRbicx4 folders are.
    lr = bicubic_downsample_uint8(hr[:height // 4 * 4, :width // 4 * 4], SCALE)
    write_image(str(tmp_path / "Set5" / "LRbicx4" / f"{name}.png"), lr)
  config = eval_config(
      set5=dict(hr_dir=str(tmp_path / "Set5" / "HR"), lr_dir=str(tmp_path / "Set5" / "LRbicx4")),
      set5_generated=dict(hr_dir=str(tmp_path / "Set5" / "HR")))
  eval_sets = create_eval_sets(config, scale=SCALE)
  for set_name in ("set5", "set5_generated"):
    images = eval_sets[set_name]
    assert [image.name for image in images] == ["baby", "bird"]
    for image in images:
      assert image.hr.shape == (image.lr.shape[0] * 4, image.lr.shape[1] * 4, 3)
  assert eval_sets["set5"][0].hr.shape == (48, 40, 3)
  for given, generated in zip(eval_sets["set5"], eval_sets["set5_generated"]):
    np.testing.assert_array_equal(given.lr, generated.lr)
    np.testing.assert_array_equal(given.hr, generated.hr)


def test_eval_pair_of_the_wrong_size_is_an_error_naming_the_pair(tmp_path):
  write_image(str(tmp_path / "HR" / "comic.png"), np.zeros((40, 40, 3), np.uint8))
  write_image(str(tmp_path / "LR" / "comic.png"), np.zeros((20, 20, 3), np.uint8))
  config = eval_config(set14=dict(hr_dir=str(tmp_path / "HR"), lr_dir=str(tmp_path / "LR")))
  with pytest.raises(datasets.PairSizeError, match=r"HR/comic\.png.*LR/comic\.png"):
    create_eval_sets(config, scale=SCALE)


def test_eval_set_errors_for_missing_dirs_and_bad_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    create_eval_sets(eval_config(a=dict(hr_dir=str(tmp_path / "nowhere"))), scale=SCALE)
  # An unset hr_dir is config_checks' (tests/commands/test_configs.py), before any file is read.
  write_image(str(tmp_path / "HR" / "good.png"), np.zeros((16, 16, 3), np.uint8))
  (tmp_path / "HR" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
  config = eval_config(a=dict(hr_dir=str(tmp_path / "HR")))
  assert [image.name for image in create_eval_sets(config, scale=SCALE)["a"]] == ["good"]
  config.on_bad_image = "error"
  with pytest.raises(datasets.ImageReadError, match=r"bad\.png"):
    create_eval_sets(config, scale=SCALE)


def test_missing_data_and_empty_eval_sets_are_user_errors(tmp_path):
  write_image(str(tmp_path / "hr" / "orphan.png"), np.zeros((8, 8, 3), np.uint8))
  write_image(str(tmp_path / "lr" / "other.png"), np.zeros((2, 2, 3), np.uint8))
  with pytest.raises(datasets.DatasetNotFoundError, match="no LR image"):
    datasets.match_lr_paths([str(tmp_path / "hr" / "orphan.png")], str(tmp_path / "lr"), SCALE)
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
  config = eval_config(a=dict(hr_dir=str(tmp_path / "bad")))
  with pytest.raises(cli.ConfigError, match="config.data.eval_sets.a.hr_dir: no readable images"):
    create_eval_sets(config, scale=SCALE)
  with pytest.raises(cli.ConfigError, match="config.data.tfds_name='no_such_dataset'"):
    datasets.open_tfds_builder("no_such_dataset", data_dir=str(tmp_path))

# ------------------------------------------------------------------------------------------------
# DIV2K through TFDS: a tiny DIV2K prepared by TFDS's own div2k builder from local files, then read
# back by our code through `tfds.builder('div2k/bicubic_x4', data_dir=...)`, as on a real pod.


@pytest.fixture(scope="module")
def tiny_div2k(tmp_path_factory):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("div2k")
  rng = np.random.default_rng(0)
  hr_images = []
  for i in range(1, 9):  # DIV2K's file names: 0001.png and 0001x4.png.
    hr = random_image(rng, 40, 48 if i % 2 else 44)
    hr_images.append(hr)
    write_image(str(root / "hr" / f"{i:04d}.png"), hr)
    write_image(str(root / "lr" / f"{i:04d}x4.png"), bicubic_downsample_uint8(hr, SCALE))

  class LocalDiv2k(tfds.builder_cls("div2k"), skip_registration=True):
    """TFDS's div2k builder (its _info and _generate_examples) with the downloads replaced."""
    name = "div2k"

    def _split_generators(self, dl_manager):
      del dl_manager
      return [tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs=dict(
          lr_path=str(root / "lr"), hr_path=str(root / "hr")))]

  data_dir = str(root / "tfds")
  LocalDiv2k(config="bicubic_x4", data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return data_dir, hr_images


def div2k_config(data_dir, **overrides):
  config = default.data_config()
  config.update(dataset="div2k", tfds_data_dir=data_dir, patch_size=16, num_workers=2,
                min_images_per_slot=2, tfds_download=False)
  config.update(**overrides)
  return config


def take(config, steps, batch_size=4, **kwargs):
  with pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=batch_size, seed=0,
                                      **kwargs) as iterator:
    return [next(iterator) for _ in range(steps)]


def test_div2k_batches_from_tfds_are_patches_of_its_images(tiny_div2k):
  data_dir, hr_images = tiny_div2k
  batches = take(div2k_config(data_dir, use_hflip=False, use_rot=False), steps=2)
  for batch in batches:
    assert batch["hr"].shape == (4, 16, 16, 3) and batch["lr"].shape == (4, 4, 4, 3)
    for lr, hr in zip(batch["lr"], batch["hr"]):
      hr = np.round(hr * 255).astype(np.uint8)
      lr = np.round(lr * 255).astype(np.uint8)
      found = [(image, top, left) for image in hr_images
               for top in range(0, image.shape[0] - 15, 4)
               for left in range(0, image.shape[1] - 15, 4)
               if np.array_equal(image[top:top + 16, left:left + 16], hr)]
      assert found, "HR patch is not a crop of any DIV2K image"
      image, top, left = found[0]
      whole_lr = bicubic_downsample_uint8(image, SCALE)
      np.testing.assert_array_equal(lr, whole_lr[top // 4:top // 4 + 4, left // 4:left // 4 + 4])


def test_div2k_shards_make_the_same_global_batch_and_resume(tiny_div2k):
  data_dir, _ = tiny_div2k
  config = div2k_config(data_dir)  # 8 images, 4 slots, 2 per slot: sharded over processes.
  single = take(config, steps=3)
  parts = [take(config, steps=3, process_index=p, process_count=2) for p in range(2)]
  for step in range(3):
    for key in ("lr", "hr"):
      np.testing.assert_array_equal(np.concatenate([parts[0][step][key], parts[1][step][key]]),
                                    single[step][key])
  resumed = take(config, steps=1, start_step=2)
  np.testing.assert_array_equal(resumed[0]["hr"], single[2]["hr"])
  lazy = take(div2k_config(data_dir, cache_decoded=False), steps=3)
  for a, b in zip(single, lazy):
    np.testing.assert_array_equal(a["lr"], b["lr"])


def test_missing_div2k_names_the_directory_and_how_to_prepare_it(tmp_path):
  config = div2k_config(str(tmp_path / "empty_tfds"))
  with pytest.raises(datasets.DatasetNotFoundError) as error:
    take(config, steps=1)
  message = str(error.value)
  assert str(tmp_path / "empty_tfds" / "div2k" / "bicubic_x4") in message
  assert "tfds build div2k/bicubic_x4" in message and "--manual_dir" in message
  assert "DIV2K_train_HR.zip" in message and "DIV2K_train_LR_bicubic_X4.zip" in message


def test_div2k_scale_must_match_the_model(tmp_path):
  # A config check (config_checks), made before anything is read or compiled.
  config = esrgan_psnr.get_config()
  config.data = div2k_config(str(tmp_path))
  config.model.scale = 2
  with pytest.raises(config_checks.ConfigError,
                     match="x4 LR images but the model's scale is 2"):
    config_checks.validate(config, 1)
  config.model.scale = 4
  config_checks.validate(config, 1)


def test_eval_set_folder_errors_name_the_config_field(tmp_path):
  (tmp_path / "empty").mkdir()
  config = eval_config(set5=dict(hr_dir=str(tmp_path / "empty")))
  with pytest.raises(images.ImageFolderError,
                     match=r"^config\.data\.eval_sets\.set5\.hr_dir: .*empty: no image files"):
    create_eval_sets(config, scale=SCALE)
  write_image(str(tmp_path / "hr" / "baby.png"), np.zeros((8, 8, 3), np.uint8))
  write_image(str(tmp_path / "lr" / "other.png"), np.zeros((2, 2, 3), np.uint8))
  config = eval_config(set5=dict(hr_dir=str(tmp_path / "hr"), lr_dir=str(tmp_path / "lr")))
  with pytest.raises(datasets.DatasetNotFoundError,
                     match=r"^config\.data\.eval_sets\.set5\.lr_dir: .*baby\.png: no LR image"):
    create_eval_sets(config, scale=SCALE)
