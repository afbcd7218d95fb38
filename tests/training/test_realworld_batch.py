"""Real-ESRNet / Real-ESRGAN training: the device pre-step, its pool, determinism, the demos.

The degradation pipeline takes about a minute to compile on CPU, so the module compiles the
real-world stage-1 step once (a persistent compilation cache shared by its runs: the resumed run
loads it) and the 4-device run and the demo commands run in their own processes beside it.
"""

import json
import logging as std_logging
import os
import re
import subprocess
import sys
import tempfile
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import logging

from configs import realesrgan_x2plus, realesrgan_x4plus, realesrnet_x4plus
from esrgan_jax import config_checks
from esrgan_jax.data import pipeline
from esrgan_jax.runtime import parallel
from esrgan_jax.training import realworld_batch, train
from tests.compile_events import recorded_compiles

from tests import REPO_ROOT
NUM_STEPS = 20


def realworld_config(num_steps: int = NUM_STEPS):
  """Real-ESRNet on 48 px GT squares, 32 / 8 crops; four pools of one slot and two pairs, so
  steps 0-1 fill them and every later step swaps."""
  config = realesrnet_x4plus.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.update(crop_pad_size=48, patch_size=32, eval_max_images=1, num_workers=2)
  config.degradation.update(pool_batch_size=1, pool_size=2)
  config.eval.num_comparison_images = 1
  config.optimizer_g.learning_rate = 1e-3
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=1,
                      eval_every_steps=1000, checkpoint_every_steps=5, keep_checkpoints=3)
  return config


def state_arrays(state):
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.replace(vgg=None)))
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _start(args, directory, name, env=None):
  log_path = directory / f"{name}.txt"
  with open(log_path, "w") as log:
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env or dict(os.environ), stdout=log,
                               stderr=log)
  return process, log_path


@pytest.fixture(scope="module")
def background_runs(tmp_path_factory):
  """The 4-device run and both demo commands, started first so they overlap the rest."""
  directory = tmp_path_factory.mktemp("background")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT)
  out_path = str(directory / "sharded.npz")
  sharded = _start([sys.executable, os.path.abspath(__file__), "--sharded-run", out_path],
                   directory, "sharded", env)
  stage1, stage2 = str(directory / "demo_esrnet"), str(directory / "demo_esrgan")
  short = ["--config.train.num_steps=6", "--config.train.log_every_steps=1",
           "--config.train.eval_every_steps=6", "--config.train.checkpoint_every_steps=6"]
  script = (f"{sys.executable} -m esrgan_jax.main --config=configs/realesrnet_x4plus.py:demo "
            f"--workdir={stage1} {' '.join(short)} && {sys.executable} -m esrgan_jax.main "
            f"--config=configs/realesrgan_x4plus.py:demo --workdir={stage2} {' '.join(short)} "
            f"--config.generator_init={stage1}")
  demos = _start(["bash", "-c", script], directory, "demos")
  runs = {"sharded": (*sharded, out_path), "demos": (*demos, stage1, stage2)}
  yield runs
  for process, *_ in runs.values():
    if process.poll() is None:
      process.kill()
      process.wait()


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, background_runs):
  """Twenty uninterrupted steps, counting the compilations of the train step."""
  del background_runs  # started first
  records = []
  handler = std_logging.Handler()
  handler.emit = records.append
  absl_logger = std_logging.getLogger("absl")
  absl_logger.addHandler(handler)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  try:
    workdir = str(tmp_path_factory.mktemp("straight"))
    with recorded_compiles() as compiles:
      state = train.train_and_evaluate(realworld_config(), workdir)
  finally:
    logging.set_verbosity(verbosity)
    absl_logger.removeHandler(handler)
  losses = [float(m.group(1)) for r in records
            if (m := re.search(r"step \d+/\d+ .*l_pix ([0-9.e-]+)", r.getMessage()))]
  return workdir, state_arrays(state), compiles, losses


def test_twenty_steps_compile_the_train_step_once_and_the_loss_falls(straight_run):
  _, arrays, compiles, losses = straight_run
  assert int(arrays[".step"]) == NUM_STEPS
  step_compiles = [name for name in compiles if "realworld_train_step" in name]
  assert len(step_compiles) == 1, compiles
  assert len(losses) == NUM_STEPS, losses
  # Each step sees other degradations and crops, so single losses scatter (0.14 to 0.47 here);
  # their means over five steps fall (measured 0.30 -> 0.20 at this seed).
  assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
  # Four pools (one per slot) of two uint8 pairs, filled by steps 0-1 and swapped since.
  assert arrays[".pool['lr']"].shape == (4, 2, 8, 8, 3)
  assert arrays[".pool['hr']"].dtype == np.float32  # Real-ESRNet pools its sharpened GT
  assert arrays[".pool['lr']"].dtype == np.uint8 and arrays[".pool['lr']"].max() > 0


def test_pool_round_trips_through_a_checkpoint_bit_for_bit(straight_run, tmp_path):
  """Stopped at step 10 (pools full, swapping), resumed by a fresh run to 20: the uninterrupted
  run's state, pool included."""
  workdir = str(tmp_path)
  stopped = train.train_and_evaluate(realworld_config(num_steps=10), workdir)
  assert int(stopped.step) == 10
  resumed = state_arrays(train.train_and_evaluate(realworld_config(), workdir))
  expected = straight_run[1]
  assert resumed.keys() == expected.keys()
  different = [k for k in expected if not np.array_equal(resumed[k], expected[k])]
  assert not different, different[:5]


def test_four_devices_give_the_same_pairs(straight_run, background_runs):
  """The LR of every step is the same on 4 devices (pools sharded by group) as on 1: the pools,
  which hold pairs of many steps, are bit-identical after 20 steps; parameters agree to
  reduction-order rounding."""
  process, log_path, out_path = background_runs["sharded"]
  assert process.wait(timeout=900) == 0, log_path.read_text()[-3000:]
  sharded = dict(np.load(out_path))
  # Step by step: each step's LR and HR crop, made from the batch split over 4 devices.
  for key, pairs in pairs_of_steps().items():
    np.testing.assert_array_equal(sharded[f"pairs_{key}"], pairs, err_msg=key)
  expected = straight_run[1]
  for key in (".pool['lr']", ".pool['hr']", ".step"):
    np.testing.assert_array_equal(sharded[key], expected[key], err_msg=key)
  for key, value in expected.items():
    if key.startswith(".generator["):
      np.testing.assert_allclose(sharded[key], value, rtol=0, atol=1e-4 * np.abs(value).max()
                                 + 1e-7, err_msg=key)


def test_demo_configs_run_through_main(background_runs):
  process, log_path, stage1, stage2 = background_runs["demos"]
  assert process.wait(timeout=900) == 0, log_path.read_text()[-3000:]
  log = log_path.read_text()
  for workdir in (stage1, stage2):
    results = os.path.join(workdir, "eval", "eval_results.json")
    assert os.path.exists(results), log[-2000:]
    # Evaluated on the degraded LR the model is trained for, and the JSON says so.
    with open(results, encoding="utf-8") as f:
      assert json.load(f)["sets"]["bundled"]["lr"] == "degradation, seed 0"
  assert "l_d_real" in log and "l_g_gan" in log


def test_pool_follows_dequeue_and_enqueue():
  """update_pool against a numpy model of Real-ESRGAN's queue with the same permutations."""
  groups, size, b = 2, 4, 2
  rng = np.random.default_rng(0)
  pool = {"lr": jnp.zeros((groups, size, 2, 2, 3), jnp.uint8),
          "hr": jnp.zeros((groups, size, 8, 8, 3), jnp.uint8)}
  reference = {k: np.zeros(v.shape, np.uint8) for k, v in pool.items()}
  update = jax.jit(realworld_batch.update_pool)
  for step in range(6):
    batch = {"lr": rng.integers(0, 256, (groups * b, 2, 2, 3)).astype(np.float32) / 255,
             "hr": rng.integers(0, 256, (groups * b, 8, 8, 3)).astype(np.float32) / 255}
    key = jax.random.key(step, impl="threefry2x32")
    pool, out = update(pool, batch, jnp.int32(step), key)
    codes = {k: np.round(v * 255).astype(np.uint8).reshape(groups, b, *v.shape[1:])
             for k, v in batch.items()}
    expected_out = {k: np.zeros_like(v) for k, v in codes.items()}
    for g in range(groups):
      if step * b < size:  # fill, train on the batch itself
        for k in reference:
          reference[k][g, step * b:(step + 1) * b] = codes[k][g]
          expected_out[k][g] = codes[k][g]
      else:  # shuffle, dequeue the first b, enqueue the batch there
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, g), size))
        for k in reference:
          reference[k][g] = reference[k][g][order]
          expected_out[k][g] = reference[k][g][:b]
          reference[k][g][:b] = codes[k][g]
    for k in reference:
      np.testing.assert_array_equal(np.asarray(pool[k]), reference[k], err_msg=f"{step} {k}")
      np.testing.assert_array_equal(
          np.round(np.asarray(out[k]) * 255).astype(np.uint8),
          expected_out[k].reshape(-1, *expected_out[k].shape[2:]), err_msg=f"{step} {k}")


def test_the_realworld_step_closes_over_batch_settings_not_the_config():
  config = realesrnet_x4plus.get_config("demo")
  step = realworld_batch.with_degradations(lambda state, pair, rng: (state, pair), config)
  (settings,) = [c.cell_contents for c in step.__closure__
                 if isinstance(c.cell_contents, realworld_batch.BatchSettings)]
  assert not any(isinstance(c.cell_contents, ml_collections.ConfigDict)
                 for c in step.__closure__)
  assert isinstance(settings.degradation, ml_collections.FrozenConfigDict)
  hash(settings)
  assert settings.sharpens_before_pool and not settings.needs_usm_target
  assert (settings.seed, settings.scale, settings.patch_size) == (0, 4, 64)


def test_crop_is_one_aligned_position_per_batch():
  """Same LR-grid position for every sample (BasicSR crops the batch tensor), GT at x scale;
  per-slot positions with per_sample_choices."""
  images = np.arange(2 * 16 * 16 * 3, dtype=np.float32).reshape(2, 16, 16, 3)
  slots = jnp.arange(2)
  offsets = np.asarray(realworld_batch.crop_offsets(3, 7, slots, (4, 4), 2, False))
  assert (offsets[0] == offsets[1]).all() and offsets.min() >= 0 and offsets.max() <= 2
  hr = np.asarray(realworld_batch.crop(images, offsets, 8, 4))
  top, left = offsets[0] * 4
  np.testing.assert_array_equal(hr, images[:, top:top + 8, left:left + 8])
  drawn = np.stack([np.asarray(realworld_batch.crop_offsets(3, s, jnp.arange(8), (4, 4), 2,
                                                            True)) for s in range(20)])
  assert drawn.min() == 0 and drawn.max() == 2
  assert any(len({tuple(o) for o in d}) > 1 for d in drawn)


def test_new_fields_are_checked_with_one_line():
  cases = [
      ("data.lr_source", "cubic", "config.data.lr_source must be one of"),
      ("data.crop_pad_size", 32, "config.data.patch_size=256 must not exceed"),
      ("data.crop_pad_size", 401, "config.data.crop_pad_size=401 must be a positive multiple"),
      ("degradation.pool_size", 100, "config.degradation.pool_size=100 must be 0"),
      ("degradation.pool_batch_size", 5, "config.degradation.pool_batch_size=5"),
      ("degradation.scale", 2, "config.degradation.scale=2 must equal"),
      ("data.lr_dir", "/tmp", "config.data.lr_dir=/tmp: lr_source='degradation'"),
      ("loss.gan_type", "wgan", "config.loss.gan_type must be one of"),
  ]
  for field, value, message in cases:
    config = realesrgan_x4plus.get_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(config_checks.ConfigError, match=re.escape(message)) as error:
      config_checks.validate(config, 1)
    assert "\n" not in str(error.value)
  config = realesrnet_x4plus.get_config()
  config.data.patch_size = 250  # not a multiple of the scale
  with pytest.raises(config_checks.ConfigError, match="patch_size=250"):
    config_checks.validate(config, 1)
  config = realesrnet_x4plus.get_config()
  config.data.lr_source = "bicubic"
  with pytest.raises(config_checks.ConfigError, match="config.loss.l1_gt_usm needs"):
    config_checks.validate(config, 1)


def test_configs_carry_the_recipe():
  net, gan, x2 = (m.get_config() for m in (realesrnet_x4plus, realesrgan_x4plus,
                                           realesrgan_x2plus))
  for config in (net, gan, x2):
    assert config.data.lr_source == "degradation" and config.data.crop_pad_size == 400
    assert config.data.patch_size == 256 and not config.data.use_rot and config.data.use_hflip
    assert config.degradation.pool_size == 180 and config.degradation.pool_batch_size == 12
    assert config.train.batch_size == 48 and config.train.ema_decay == 0.999
    assert config.degradation.scale == config.model.scale
    config_checks.validate(config, 1)
  assert net.stage == "psnr" and net.optimizer_g.learning_rate == 2e-4
  assert net.optimizer_g.milestones == (1_000_000,) and net.train.num_steps == 1_000_000
  assert net.loss.l1_gt_usm
  assert gan.stage == "gan" and gan.loss.gan_type == "vanilla" and gan.loss.gan_weight == 0.1
  assert gan.discriminator.name == "unet_sn" and gan.discriminator.num_feat == 64
  assert dict(gan.loss.perceptual_layers) == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                              "conv4_4": 1.0, "conv5_4": 1.0}
  assert (gan.loss.l1_gt_usm, gan.loss.percep_gt_usm, gan.loss.gan_gt_usm) == (True, True, False)
  assert gan.optimizer_g.learning_rate == gan.optimizer_d.learning_rate == 1e-4
  assert gan.train.num_steps == 400_000 and x2.model.scale == 2
  for module in (realesrnet_x4plus, realesrgan_x4plus, realesrgan_x2plus):
    config_checks.validate(module.get_config("demo"), 1)


def test_host_pipeline_yields_gt_squares_only(tmp_path):
  """GT-only mode: uint8 crop_pad_size squares cut from the images (or reflect-padded ones),
  flipped horizontally at most, deterministic per step whatever the process split."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image_rng = np.random.default_rng(1)
  small = image_rng.integers(0, 256, (20, 30, 3), np.uint8)
  large = image_rng.integers(0, 256, (60, 70, 3), np.uint8)
  Image.fromarray(small).save(tmp_path / "a_small.png")
  Image.fromarray(large).save(tmp_path / "b_large.png")
  config = realesrnet_x4plus.get_config().data
  config.update(dataset="folder", hr_dir=str(tmp_path), crop_pad_size=48, num_workers=1)

  def batches(process_index=0, process_count=1, start_step=0, count=6):
    iterator = pipeline.create_train_iterator(
        config, scale=4, global_batch_size=4, seed=3, start_step=start_step,
        process_index=process_index, process_count=process_count)
    with iterator:
      return [next(iterator) for _ in range(count)]

  whole = batches()
  padded_small = np.pad(small, ((0, 28), (0, 18), (0, 0)), mode="reflect")
  for batch in whole:
    assert set(batch) == {"hr"}
    assert batch["hr"].shape == (4, 48, 48, 3) and batch["hr"].dtype == np.uint8
    for square in batch["hr"]:
      candidates = [padded_small, padded_small[:, ::-1]]
      for flip in (False, True):
        source = large[:, ::-1] if flip else large
        candidates += [source[t:t + 48, l:l + 48] for t in range(13) for l in range(23)]
      # A reflect-padded small image (cropped at 0, 0 of its 48 px pad) or a crop of the large.
      is_small = np.array_equal(square, padded_small[:48, :48]) or np.array_equal(
          square, padded_small[:48, :48][:, ::-1])
      assert is_small or any(np.array_equal(square, c) for c in candidates[2:])
  halves = [batches(p, 2) for p in (0, 1)]
  for step, batch in enumerate(whole):
    np.testing.assert_array_equal(
        batch["hr"], np.concatenate([halves[0][step]["hr"], halves[1][step]["hr"]]))
  np.testing.assert_array_equal(batches(start_step=4, count=1)[0]["hr"], whole[4]["hr"])


PAIR_STEPS = 6


def pairs_of_steps(gt_sharding=None):
  """make_batch's pre-pool pair (LR and HR crop) at steps 0 .. PAIR_STEPS - 1 of one GT batch,
  from one compiled program (the step is traced); with gt_sharding, the batch is split over the
  devices as train.py splits it."""
  config = realworld_config()
  config.degradation.pool_size = 0
  gt = np.random.default_rng(5).integers(0, 256, (4, 48, 48, 3), np.uint8)
  gt = jax.device_put(gt, gt_sharding) if gt_sharding is not None else jnp.asarray(gt)
  no_pool = types.SimpleNamespace(pool=None)  # make_batch reads only the state's pool
  settings = realworld_batch.BatchSettings.from_config(config)
  make = jax.jit(lambda images, step: realworld_batch.make_batch(
      no_pool, images, step, settings=settings)[1])
  pairs = [make(gt, jnp.int32(step)) for step in range(PAIR_STEPS)]
  return {key: np.stack([np.asarray(p[key]) for p in pairs]) for key in ("lr", "hr")}


def _sharded_run(out_path: str) -> None:
  """Subprocess body: the straight run's config on 4 CPU devices; final state and the pairs of
  pairs_of_steps to out_path."""
  assert jax.device_count() == 4, jax.devices()
  with tempfile.TemporaryDirectory() as workdir:
    state = train.train_and_evaluate(realworld_config(), workdir)
    shardings = {leaf.sharding.spec for leaf in jax.tree.leaves(state.pool)}
    assert shardings == {jax.sharding.PartitionSpec("data")}, shardings
    pairs = pairs_of_steps(parallel.batch_sharding(parallel.create_mesh()))
    np.savez(out_path, **state_arrays(state), **{f"pairs_{k}": v for k, v in pairs.items()})


if __name__ == "__main__" and sys.argv[1:2] == ["--sharded-run"]:
  _sharded_run(sys.argv[2])
