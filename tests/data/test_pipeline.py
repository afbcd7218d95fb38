"""Tests of the training input pipeline: transforms, sampling, sharding, resume, bad input."""

import itertools
import logging
import os

import jax
import numpy as np
import pytest

from configs import default, esrgan_psnr
from esrgan_jax import config_checks
from esrgan_jax.data import augment, bicubic, pipeline
from esrgan_jax.data.bicubic import bicubic_downsample_uint8
from esrgan_jax.data.datasets import PairSizeError
from esrgan_jax.data.images import ImageReadError, read_image, write_image
from tests import REPO_ROOT

SCALE = 4
PATCH = 32


def textured_image(rng, height, width):
  """A smooth random image plus noise: bicubic LR of it is far from constant."""
  coarse = rng.uniform(0, 255, (height // 8 + 2, width // 8 + 2, 3))
  smooth = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
  return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def make_folder(directory, num_images, height=48, width=56, seed=0, lr_dir=None):
  rng = np.random.default_rng(seed)
  for i in range(num_images):
    hr = textured_image(rng, height, width)
    write_image(os.path.join(directory, f"{i:04d}.png"), hr)
    if lr_dir is not None:
      write_image(os.path.join(lr_dir, f"{i:04d}x{SCALE}.png"),
                  bicubic_downsample_uint8(augment.mod_crop(hr, SCALE), SCALE))
  return str(directory)


def folder_config(hr_dir, lr_dir=None, **overrides):
  config = default.data_config()
  config.update(dataset="folder", hr_dir=str(hr_dir), patch_size=PATCH, num_workers=2,
                min_images_per_slot=2)
  if lr_dir is not None:
    config.lr_dir = str(lr_dir)
  config.update(**overrides)
  return config


def take(config, steps, batch_size=4, seed=0, start_step=0, process_index=0, process_count=1):
  with pipeline.create_train_iterator(config, scale=SCALE, global_batch_size=batch_size, seed=seed,
                                      start_step=start_step, process_index=process_index,
                                      process_count=process_count) as iterator:
    return [next(iterator) for _ in range(steps)]


def assert_batches_equal(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    np.testing.assert_array_equal(a["lr"], b["lr"])
    np.testing.assert_array_equal(a["hr"], b["hr"])


# ------------------------------------------------------------------------------------------------
# Transforms.


def test_paired_random_crop_and_flips_keep_lr_and_hr_aligned():
  rng = np.random.default_rng(0)
  lr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
  hr = np.repeat(np.repeat(lr, SCALE, axis=0), SCALE, axis=1)  # Each LR pixel a 4x4 HR block.
  seen_flips = set()
  for _ in range(64):
    hr_patch, lr_patch = augment.paired_random_crop(hr, lr, PATCH, SCALE, rng)
    flips = augment.draw_flips(True, True, rng)
    seen_flips.add(flips)
    hr_patch = augment.apply_flips(hr_patch, *flips)
    lr_patch = augment.apply_flips(lr_patch, *flips)
    assert hr_patch.shape == (PATCH, PATCH, 3) and lr_patch.shape == (PATCH // 4, PATCH // 4, 3)
    np.testing.assert_array_equal(hr_patch, np.repeat(np.repeat(lr_patch, 4, axis=0), 4, axis=1))
  assert len(seen_flips) == 8  # hflip x vflip x transpose: all eight symmetries of the square.


def test_flips_follow_the_options():
  rng = np.random.default_rng(1)
  draws = {augment.draw_flips(False, False, rng) for _ in range(32)}
  assert draws == {(False, False, False)}
  draws = {augment.draw_flips(True, False, rng) for _ in range(32)}
  assert draws == {(False, False, False), (True, False, False)}
  image = np.arange(2 * 3 * 1).reshape(2, 3, 1)
  np.testing.assert_array_equal(augment.apply_flips(image, True, False, False), image[:, ::-1])
  np.testing.assert_array_equal(augment.apply_flips(image, False, True, False), image[::-1])
  assert augment.apply_flips(image, False, False, True).shape == (3, 2, 1)


def test_paired_random_crop_rejects_mismatched_sizes():
  with pytest.raises(ValueError, match="not 4x its LR image"):
    augment.paired_random_crop(np.zeros((40, 40, 3)), np.zeros((9, 10, 3)), PATCH, SCALE,
                               np.random.default_rng(0))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_patch_on_the_fly_equals_the_whole_images_lr(scale):
  rng = np.random.default_rng(scale)
  lr_h, lr_w, lr_patch = 19, 23, 8
  hr = textured_image(rng, lr_h * scale, lr_w * scale)
  whole_lr = bicubic_downsample_uint8(hr, scale)
  for top in range(lr_h - lr_patch + 1):
    for left in (0, 1, 5, lr_w - lr_patch - 1, lr_w - lr_patch):
      np.testing.assert_array_equal(
          bicubic.bicubic_lr_patch(hr, top, left, lr_patch, lr_patch, scale),
          whole_lr[top:top + lr_patch, left:left + lr_patch])
  np.testing.assert_array_equal(bicubic.bicubic_lr_image(hr, scale, tile=7), whole_lr)


# ------------------------------------------------------------------------------------------------
# Batches: content, determinism, resume, topology.


def test_bundled_batches_have_the_documented_layout():
  config = default.data_config()
  config.patch_size = PATCH
  batch = take(config, steps=1)[0]
  assert batch["lr"].shape == (4, PATCH // SCALE, PATCH // SCALE, 3)
  assert batch["hr"].shape == (4, PATCH, PATCH, 3)
  for key in ("lr", "hr"):
    assert batch[key].dtype == np.float32
    assert 0.0 <= batch[key].min() and batch[key].max() <= 1.0
  # Each LR patch is the bicubic downscaling of its HR patch up to the context at its border.
  for lr, hr in zip(batch["lr"], batch["hr"]):
    hr_uint8 = np.round(hr * 255).astype(np.uint8)
    expected = bicubic_downsample_uint8(hr_uint8, SCALE)[2:-2, 2:-2].astype(np.float32) / 255
    np.testing.assert_allclose(lr[2:-2, 2:-2], expected, atol=1.5 / 255)


@pytest.mark.parametrize("lr_source", ["bicubic", "degradation"])
def test_global_batch_spec_is_what_the_iterators_yield(lr_source):
  """What `python -m esrgan_jax.plan` compiles for without reading a single image."""
  config = default.data_config()
  config.update(patch_size=PATCH, lr_source=lr_source, crop_pad_size=2 * PATCH)
  batch = take(config, steps=1, batch_size=4)[0]
  spec = pipeline.global_batch_spec(config, scale=SCALE, global_batch_size=4)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == spec


def _channel_orders(plain, shuffled):
  """The channel order of each shuffled example, checking LR and HR got the same one."""
  orders = []
  for key in plain:
    for a, b in zip(plain[key], shuffled[key]):
      matches = [p for p in itertools.permutations(range(3)) if np.array_equal(a[..., p], b)]
      assert matches, "a shuffled patch is not a channel permutation of the plain one"
      orders.append(set(matches))
  half = len(orders) // len(plain)
  return [lr & hr for lr, hr in zip(orders[:half], orders[half:])] if len(plain) == 2 else orders


@pytest.mark.parametrize("lr_source", ["bicubic", "degradation"])
def test_channel_shuffle_permutes_the_channels_of_each_patch_and_nothing_else(tmp_path,
                                                                              lr_source):
  """Same crops and flips as without it; LR and HR share one random order per example."""
  hr_dir = make_folder(tmp_path / "hr", 4)
  config = folder_config(hr_dir, lr_source=lr_source, crop_pad_size=PATCH)
  plain = take(config, steps=4)
  config.channel_shuffle = True
  shuffled = take(config, steps=4)
  orders = [order for a, b in zip(plain, shuffled) for order in _channel_orders(a, b)]
  assert all(orders)  # LR and HR of an example agree on an order
  assert len({min(order) for order in orders}) > 2  # several orders are drawn
  assert default.data_config().channel_shuffle is False


def test_paired_folder_gives_the_same_batches_as_lr_made_on_the_fly(tmp_path):
  hr_dir = make_folder(tmp_path / "hr", 4, lr_dir=tmp_path / "lr")
  on_the_fly = take(folder_config(hr_dir), steps=3)
  paired = take(folder_config(hr_dir, tmp_path / "lr"), steps=3)
  assert_batches_equal(on_the_fly, paired)


def test_batches_depend_only_on_seed_and_step_and_resume_exactly(tmp_path):
  hr_dir = make_folder(tmp_path / "hr", 8)
  config = folder_config(hr_dir)
  uninterrupted = take(config, steps=6, seed=3)
  assert_batches_equal(uninterrupted, take(config, steps=6, seed=3))
  assert_batches_equal(uninterrupted[4:], take(config, steps=2, seed=3, start_step=4))
  other_seed = take(config, steps=1, seed=4)
  assert not np.array_equal(other_seed[0]["hr"], uninterrupted[0]["hr"])
  # shuffle_seed overrides the trainer's seed.
  assert_batches_equal(uninterrupted[:1], take(folder_config(hr_dir, shuffle_seed=3), 1, seed=9))


@pytest.mark.parametrize("cache_decoded", [True, False])
def test_processes_read_disjoint_shards_and_together_make_the_global_batch(
    tmp_path, monkeypatch, cache_decoded):
  hr_dir = make_folder(tmp_path / "hr", 8)
  config = folder_config(hr_dir, cache_decoded=cache_decoded)  # 2 images per slot: sharded.
  single = take(config, steps=3)

  from esrgan_jax.data import datasets  # pylint: disable=g-import-not-at-top
  read = []
  monkeypatch.setattr(datasets, "read_image", lambda path: (read.append(path), read_image(path))[1])
  for process_count in (2, 4):
    parts, shards = [], []
    for process_index in range(process_count):
      read.clear()
      parts.append(take(config, steps=3, process_index=process_index,
                        process_count=process_count))
      shards.append({os.path.basename(p) for p in read})
    for step in range(3):
      for key in ("lr", "hr"):
        np.testing.assert_array_equal(np.concatenate([part[step][key] for part in parts]),
                                      single[step][key])
    # Process p reads files [8p/P, 8(p+1)/P) only: contiguous, disjoint shards.
    for process_index, shard in enumerate(shards):
      per = 8 // process_count
      own = {f"{i:04d}.png" for i in range(process_index * per, (process_index + 1) * per)}
      assert shard and shard <= own


def test_every_image_is_used_once_per_stratum_epoch(tmp_path):
  sampler = pipeline.SlotSampler(num_images=32, global_batch_size=4, seed=0, min_images_per_slot=8)
  assert sampler.sharded
  for slot in range(4):
    start, stop = sampler.stratum(slot)
    assert (start, stop) == (slot * 8, slot * 8 + 8)
    epoch0 = [sampler.candidate(slot, position) for position in range(8)]
    epoch1 = [sampler.candidate(slot, position) for position in range(8, 16)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(start, stop))
    assert epoch0 != epoch1  # A new order each epoch.
  small = pipeline.SlotSampler(num_images=6, global_batch_size=4, seed=0, min_images_per_slot=8)
  assert not small.sharded and small.stratum(3) == (0, 6)


def test_lazy_decoding_gives_the_same_batches_as_the_cache(tmp_path):
  hr_dir = make_folder(tmp_path / "hr", 5)
  assert_batches_equal(take(folder_config(hr_dir, cache_decoded=True), steps=3),
                       take(folder_config(hr_dir, cache_decoded=False), steps=3))


# ------------------------------------------------------------------------------------------------
# Bad input.


def corrupt_folder(tmp_path):
  hr_dir = make_folder(tmp_path / "hr", 3)
  with open(os.path.join(hr_dir, "0001.png"), "rb") as f:
    data = f.read()
  with open(os.path.join(hr_dir, "0001.png"), "wb") as f:
    f.write(data[:len(data) // 2])  # Truncated PNG.
  with open(os.path.join(hr_dir, "0003.jpg"), "wb") as f:
    f.write(b"this is not a jpeg")
  return hr_dir


@pytest.mark.parametrize("cache_decoded", [True, False])
def test_unreadable_images_are_skipped_with_a_warning_naming_them(tmp_path, caplog,
                                                                  cache_decoded):
  hr_dir = corrupt_folder(tmp_path)
  config = folder_config(hr_dir, cache_decoded=cache_decoded)
  with caplog.at_level(logging.WARNING):
    batches = take(config, steps=4)
  assert "0001.png" in caplog.text and "0003.jpg" in caplog.text
  good = [read_image(os.path.join(hr_dir, name)) for name in ("0000.png", "0002.png")]
  # Every HR patch comes from one of the two readable images.
  for batch in batches:
    for hr in np.round(batch["hr"] * 255).astype(np.uint8):
      assert any(patch_occurs_in(hr, image) for image in good)


def patch_occurs_in(patch, image):
  for candidate in symmetries(patch):
    size = candidate.shape[0]
    for top in range(0, image.shape[0] - size + 1, SCALE):
      for left in range(0, image.shape[1] - size + 1, SCALE):
        if np.array_equal(image[top:top + size, left:left + size], candidate):
          return True
  return False


def symmetries(patch):
  for flips in [(h, v, t) for h in (0, 1) for v in (0, 1) for t in (0, 1)]:
    yield augment.apply_flips(patch, *flips)


def test_unreadable_image_is_an_error_when_configured(tmp_path):
  hr_dir = corrupt_folder(tmp_path)
  with pytest.raises(ImageReadError, match="0001.png"):
    take(folder_config(hr_dir, on_bad_image="error"), steps=1)


def test_grayscale_rgba_and_16_bit_inputs_become_rgb(tmp_path):
  rng = np.random.default_rng(0)
  rgb = textured_image(rng, 40, 40)
  gray = rgb[..., :1]
  hr_dir = tmp_path / "hr"
  write_image(str(hr_dir / "gray.png"), gray)
  write_image(str(hr_dir / "rgba.png"), np.concatenate([rgb, np.full_like(gray, 7)], axis=-1))
  write_image(str(hr_dir / "deep.png"), rgb.astype(np.uint16) * 257)
  batches = take(folder_config(hr_dir, use_hflip=False, use_rot=False), steps=2)
  for batch in batches:
    assert batch["hr"].shape[-1] == 3 and batch["lr"].shape[-1] == 3
    for hr in np.round(batch["hr"] * 255).astype(np.uint8):
      is_gray = np.array_equal(hr[..., 0], hr[..., 1]) and np.array_equal(hr[..., 0], hr[..., 2])
      source = np.repeat(gray, 3, axis=-1) if is_gray else rgb  # RGBA and 16-bit: the RGB.
      assert patch_occurs_in(hr, source)


def test_small_images_are_skipped_or_padded(tmp_path, caplog):
  hr_dir = make_folder(tmp_path / "hr", 2)
  rng = np.random.default_rng(5)
  small = textured_image(rng, 20, 26)
  write_image(str(tmp_path / "hr" / "0002_small.png"), small)
  with caplog.at_level(logging.WARNING):
    take(folder_config(hr_dir, on_small_image="skip", min_images_per_slot=1), steps=1)
  assert "0002_small.png" in caplog.text and "smaller than the 32x32" in caplog.text

  # Alone in the folder, a padded small image still gives full patches, made of its pixels.
  only_small = tmp_path / "only_small"
  write_image(str(only_small / "small.png"), small)
  batch = take(folder_config(only_small, on_small_image="pad", use_hflip=False, use_rot=False),
               steps=1)[0]
  padded = np.pad(small, ((0, PATCH - 20), (0, PATCH - 26), (0, 0)), mode="reflect")
  for hr in np.round(batch["hr"] * 255).astype(np.uint8):
    np.testing.assert_array_equal(hr, padded)
  with pytest.raises(ValueError, match="every training image"):
    take(folder_config(only_small, on_small_image="skip"), steps=1)


def test_missing_and_empty_directories_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does_not_exist"):
    take(folder_config(tmp_path / "does_not_exist"), steps=1)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no image files"):
    take(folder_config(tmp_path / "empty"), steps=1)
  # An unset hr_dir is a config check (config_checks), made before anything is read.
  config = esrgan_psnr.get_config()
  config.data = folder_config("")
  with pytest.raises(ValueError, match="hr_dir"):
    config_checks.validate(config, 1)


def test_lr_hr_pairs_of_the_wrong_size_are_an_error_naming_the_pair(tmp_path):
  hr_dir = make_folder(tmp_path / "hr", 2, lr_dir=tmp_path / "lr")
  write_image(str(tmp_path / "lr" / "0001x4.png"), np.zeros((10, 10, 3), np.uint8))
  with pytest.raises(PairSizeError, match=r"0001\.png.*0001x4\.png"):
    take(folder_config(hr_dir, tmp_path / "lr"), steps=1)


def test_bad_process_layout_is_named():
  # The config fields are checked by config_checks (tests/commands/test_configs.py); these are arguments.
  with pytest.raises(ValueError, match="multiple of the number of processes"):
    take(default.data_config(), 1, batch_size=3, process_count=2)
  with pytest.raises(ValueError, match="process index 2"):
    take(default.data_config(), 1, batch_size=4, process_index=2, process_count=2)


# ------------------------------------------------------------------------------------------------
# Onto the mesh.


def test_prefetch_to_mesh_makes_global_arrays_sharded_over_data():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batches = [{"lr": np.full((len(jax.devices()) * 2, 2, 2, 3), i, np.float32)} for i in range(3)]
  arrays = list(pipeline.prefetch_to_mesh(iter(batches), sharding))
  assert len(arrays) == 3
  for batch, array in zip(batches, arrays):
    assert isinstance(array["lr"], jax.Array) and array["lr"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(array["lr"]), batch["lr"])


def test_prefetch_to_mesh_reraises_input_errors():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

  def failing():
    yield {"lr": np.zeros((len(jax.devices()), 2), np.float32)}
    raise ImageReadError("broken.png: truncated")

  iterator = pipeline.prefetch_to_mesh(failing(), sharding)
  next(iterator)
  with pytest.raises(ImageReadError, match="broken.png"):
    next(iterator)


_TWO_PROCESS_SCRIPT = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import numpy as np
from configs import default
from esrgan_jax.data import pipeline
config = default.data_config()
config.update(patch_size=16, num_workers=2)
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
replicate = jax.jit(lambda x: x, out_shardings=jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec()))
iterator = pipeline.create_train_iterator(config, scale=4, global_batch_size=8, seed=0)
batches = pipeline.prefetch_to_mesh(iterator, sharding)
hr = [np.asarray(replicate(next(batches)["hr"])) for _ in range(2)]
if jax.process_index() == 0:
  np.save(sys.argv[3], np.stack(hr))
"""


def test_two_processes_assemble_the_single_process_global_batch(tmp_path):
  """Two JAX processes x 2 CPU devices: the global arrays equal a one-process run's batches."""
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  script = tmp_path / "two_processes.py"
  script.write_text(_TWO_PROCESS_SCRIPT)
  output = tmp_path / "hr.npy"
  repo = REPO_ROOT
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu", PYTHONPATH=repo)
  processes = [subprocess.Popen([sys.executable, str(script), address, str(i), str(output)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for i in range(2)]
  logs = [p.communicate(timeout=120)[0].decode() for p in processes]
  for process, log in zip(processes, logs):
    assert process.returncode == 0, log[-3000:]
  config = default.data_config()
  config.update(patch_size=16, num_workers=2)
  expected = take(config, steps=2, batch_size=8)
  np.testing.assert_array_equal(np.load(output), np.stack([b["hr"] for b in expected]))
