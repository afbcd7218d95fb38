"""Training SRVGGNetCompact and SPAN (config.model.arch): both stages, exact resume, one compile.

Tiny models (compact: 8 features, 2 body convs; SPAN: 8 channels) at 32 px patches, 4 steps; the
GAN stage uses the U-Net SN discriminator, which takes 32 px patches (VGG-style needs 128). The
config rules of the new fields are checked here too.
"""

import json
import os

import jax
import numpy as np
import pytest

from configs import esrgan
from esrgan_jax import config_checks
from esrgan_jax.evaluation import evaluate
from esrgan_jax.training import train
from esrgan_jax.training.state import build_generator, generator_arch
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
from tests.compile_events import recorded_compiles
from tests.training.test_train import (assert_bit_identical, psnr_config, saved_steps,
                                       state_arrays)

NUM_STEPS = 4
GAN_STEPS = 2
TINY = {"srvgg_compact": dict(num_feat=8, num_conv=2), "span": dict(feature_channels=8)}
ARCHS = tuple(TINY)

pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def fast_config(arch: str, num_steps: int = NUM_STEPS):
  config = psnr_config(num_steps)
  config.model.update(arch=arch, **TINY.get(arch, {}))
  return config


def fast_gan_config(arch: str, generator_init: str, num_steps: int = GAN_STEPS):
  config = esrgan.get_config()
  config.model.update(arch=arch, **TINY[arch])
  config.generator_init = generator_init
  config.data.update(patch_size=32, eval_max_images=1, num_workers=2)
  config.eval.num_comparison_images = 1
  config.discriminator.update(name="unet_sn", num_feat=4)
  config.loss.perceptual_layers = {"conv1_2": 1.0}
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=1,
                      eval_every_steps=100, checkpoint_every_steps=1, keep_checkpoints=5)
  return config


@pytest.fixture(scope="module")
def stage1_runs(tmp_path_factory):
  """arch -> (workdir, state arrays, names compiled) of an uninterrupted stage-1 run."""
  runs = {}
  for arch in ARCHS:
    workdir = str(tmp_path_factory.mktemp(f"psnr_{arch}"))
    with recorded_compiles() as compiles:
      state = train.train_and_evaluate(fast_config(arch), workdir)
    runs[arch] = (workdir, state_arrays(state), compiles)
  return runs


@pytest.mark.parametrize("arch", ARCHS)
def test_stage1_trains_evaluates_and_checkpoints_its_arch(arch, stage1_runs):
  workdir, arrays, _ = stage1_runs[arch]
  assert int(arrays[".step"]) == NUM_STEPS
  assert NUM_STEPS in saved_steps(workdir)
  results = json.loads(open(os.path.join(workdir, "eval", "eval_results.json")).read())
  assert np.isfinite(results["sets"]["bundled"]["mean"]["psnr_y"])
  _, meta, _ = checkpoints.read_latest_generator(workdir, "generator_ema")
  assert meta["arch"] == generator_arch(fast_config(arch))
  assert meta["arch"]["arch"] == arch
  params, record = generator_weights.load_generator(workdir)
  assert record == generator_arch(fast_config(arch))
  ema = {k: v for k, v in arrays.items() if k.startswith(".generator_ema")}
  assert len(jax.tree.leaves(params)) == len(ema)


@pytest.mark.parametrize("arch", ARCHS)
def test_train_step_compiles_once(arch, stage1_runs):
  compiles = stage1_runs[arch][2]
  step_compiles = [name for name in compiles if "train_step" in name]
  assert len(step_compiles) == 1, compiles


@pytest.mark.parametrize("arch", ARCHS)
def test_resumed_run_matches_uninterrupted_run_bit_for_bit(arch, stage1_runs, tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(fast_config(arch, NUM_STEPS // 2), workdir)
  assert saved_steps(workdir)[-1] == NUM_STEPS // 2
  resumed = train.train_and_evaluate(fast_config(arch), workdir)
  assert_bit_identical(state_arrays(resumed), stage1_runs[arch][1])


@pytest.mark.parametrize("arch", ARCHS)
def test_gan_stage_starts_from_stage1_and_runs(arch, stage1_runs, tmp_path):
  stage1_dir, stage1_arrays, _ = stage1_runs[arch]
  config = fast_gan_config(arch, stage1_dir)
  config_checks.validate(config, 1)
  params, ema_params = train.load_initial_generator(config)
  for prefix, tree in ((".generator", params), (".generator_ema", ema_params)):
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in leaves:
      np.testing.assert_array_equal(leaf, stage1_arrays[prefix + jax.tree_util.keystr(path)])
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == GAN_STEPS
  arrays = state_arrays(state)
  assert all(np.isfinite(v).all() for v in arrays.values() if v.dtype.kind == "f")
  results = json.loads(open(tmp_path / "eval" / "eval_results.json").read())
  assert np.isfinite(results["sets"]["bundled"]["mean"]["psnr_y"])


def test_generator_init_from_ema_starts_both_generators_from_the_ema(stage1_runs):
  """Real-ESRGAN's stage 2 (param_key_g params_ema): G starts from stage 1's EMA, not its raw G."""
  stage1_dir, stage1_arrays, _ = stage1_runs["srvgg_compact"]
  config = fast_gan_config("srvgg_compact", stage1_dir)
  config.generator_init_from_ema = True
  params, ema_params = train.load_initial_generator(config)
  differs = False
  for tree in (params, ema_params):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      key = jax.tree_util.keystr(path)
      np.testing.assert_array_equal(leaf, stage1_arrays[".generator_ema" + key])
      differs |= not np.array_equal(leaf, stage1_arrays[".generator" + key])
  assert differs  # stage 1's raw G is not its EMA, so the flag chose


def test_generator_init_of_another_arch_is_refused(stage1_runs):
  config = fast_gan_config("span", stage1_runs["srvgg_compact"][0])
  with pytest.raises(generator_weights.CheckpointError, match="does not match config.model"):
    train.load_initial_generator(config)


@pytest.mark.parametrize("arch", ["rrdbnet", *ARCHS])
def test_generator_arch_is_the_built_modules_record(arch):
  config = fast_config(arch) if arch != "rrdbnet" else psnr_config()
  record = generator_arch(config)
  assert record == generator_weights.arch_of(build_generator(config))
  assert train.generator_meta(config)["arch"] == record
  # RRDBNet's record stays as checkpoints have always stored it: no "arch" key.
  assert ("arch" in record) == (arch != "rrdbnet")


def test_evaluation_runs_span_folded(monkeypatch):
  config = fast_config("span")
  generator = build_generator(config)
  lr = jax.random.uniform(jax.random.key(1), (1, 12, 10, 3))
  params = generator.init(jax.random.key(0), lr)["params"]
  applied = []

  def recording_apply(module, module_params, images):
    applied.append(module.deploy)
    return module.apply({"params": module_params}, images)

  monkeypatch.setattr(evaluate, "apply_generator", recording_apply)
  sr = evaluate.make_generate_fn(generator, params)(np.asarray(lr))
  assert applied == [True]
  expected = generator.apply({"params": params}, lr)
  np.testing.assert_allclose(sr, np.asarray(expected, np.float32), atol=1e-4)
  assert sr.shape == (1, 48, 40, 3)


def _validated(arch: str, mode: str = "train", patch_size: int = 32, **model):
  config = fast_config(arch)
  config.model.update(**model)
  config.data.patch_size = patch_size
  config_checks.validate(config, 1, mode)


@pytest.mark.parametrize("arch, model, expected", [
    ("esrgan", {}, r"config\.model\.arch must be one of \('rrdbnet', 'srvgg_compact', 'span'\)"),
    ("srvgg_compact", {"num_conv": -1},
     "config.model.num_conv must be a non-negative integer, got -1"),
    ("srvgg_compact", {"act_type": "gelu"}, "config.model.act_type must be one of"),
    ("srvgg_compact", {"num_feat": 0}, "config.model.num_feat must be a positive integer"),
    ("srvgg_compact", {"num_in_ch": 2}, "config.model.num_in_ch=2 must be 1 or "
     "config.model.num_out_ch=3"),
    ("span", {"feature_channels": 0},
     "config.model.feature_channels must be a positive integer, got 0"),
    ("span", {"num_in_ch": 1}, r"config\.model\.norm=True .* needs config\.model\.num_in_ch=3"),
    ("span", {"scale": 5}, r"config\.model\.scale must be one of \(1, 2, 3, 4\)"),
    ("rrdbnet", {"scale": 3}, r"config\.model\.scale must be one of \(1, 2, 4\)"),
])
def test_model_fields_are_named_in_both_modes(arch, model, expected):
  for mode in ("train", "eval"):
    with pytest.raises(config_checks.ConfigError, match=expected):
      _validated(arch, mode, **model)


def test_fast_models_need_patches_of_their_scale_only():
  # Compact and SPAN never unshuffle: x2 takes any even patch, x3 multiples of 3.
  _validated("srvgg_compact", scale=2, num_in_ch=1)
  _validated("span", patch_size=48, scale=3, norm=False, num_in_ch=1)
  with pytest.raises(config_checks.ConfigError, match="patch_size=32 must be a positive multiple "
                     "of 3"):
    _validated("span", scale=3)
  config = psnr_config()
  config.model.scale = 2
  config.data.patch_size = 34
  with pytest.raises(config_checks.ConfigError, match="multiple of 4"):
    config_checks.validate(config, 1)
  config.model.arch = "srvgg_compact"
  config_checks.validate(config, 1)
