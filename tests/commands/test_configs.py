"""configs/ and config_checks: one schema, one validation path, for train and eval mode."""

import os
import re

import jax
import jax.numpy as jnp
import pytest

from configs import default, esrgan, esrgan_ldl, esrgan_psnr
from configs import realesrgan_x2plus, realesrgan_x4plus, realesrgan_x4plus_ldl, realesrnet_x4plus
from esrgan_jax import config_checks
from esrgan_jax.data import datasets
from esrgan_jax.runtime import flops
from tests import REPO_ROOT


STAGE_MODULES = (esrgan_psnr, esrgan, realesrnet_x4plus, realesrgan_x4plus, realesrgan_x2plus,
                 esrgan_ldl, realesrgan_x4plus_ldl)


def test_stage_configs_and_demos_pass_for_train_and_eval():
  for module in STAGE_MODULES:
    for variant in ("", "demo"):
      config = module.get_config(variant)
      config_checks.validate(config, 1, "train")
      config_checks.validate(config, 1, "eval")


def test_stage_files_only_override_the_default_schema():
  schema = default.get_config()
  for module in STAGE_MODULES:
    config = module.get_config("demo")
    assert set(config.keys()) == set(schema.keys())
    for section in ("model", "data", "train", "loss", "eval", "degradation"):
      assert set(config[section].keys()) == set(schema[section].keys()), section


def test_code_reads_config_fields_without_restating_defaults():
  """configs/default.py names every field and its default; code reads `config.x`, never
  `config.get("x", default)`, which would be a second default that could drift from the first."""
  config_get = re.compile(r"\b(\w*config|data|loss|model|evaluation|degradation)(\.\w+)*\.get\(")
  found = []
  for directory, _, files in os.walk(os.path.join(REPO_ROOT, "esrgan_jax")):
    for name in (f for f in files if f.endswith(".py")):
      path = os.path.join(directory, name)
      with open(path, encoding="utf-8") as f:
        found += [f"{os.path.relpath(path, REPO_ROOT)}:{number}: {line.strip()}"
                  for number, line in enumerate(f, 1) if config_get.search(line)]
  assert not found, "\n".join(found)


def test_unknown_schedule_is_named():
  # The one check of the name (training/optim.py's SCHEDULES has the schedules).
  config = esrgan_psnr.get_config()
  config.optimizer_g.schedule = "linear"
  with pytest.raises(config_checks.ConfigError, match=r"config\.optimizer_g\.schedule must be "
                     r"one of \('multistep', 'cosine_restarts'\), got 'linear'"):
    config_checks.validate(config, 1)


def test_demo_schedules_every_optimiser():
  config = esrgan.get_config()
  default.apply_demo(config, num_steps=200, learning_rates={"optimizer_g": 1e-3})
  for name in default.optimizers(config):
    assert config[name].milestones == (config.train.num_steps // 2,), name
    assert config[name].restart_periods == (config.train.num_steps,), name
  assert default.optimizers(config) == ["optimizer_d", "optimizer_g"]


@pytest.mark.parametrize("module", [esrgan_psnr, esrgan, realesrnet_x4plus, realesrgan_x4plus])
def test_demos_shuffle_colour_channels_and_full_recipes_do_not(module):
  """The bundled photos are warm: the demos' tiny models would learn a colour prior from them
  (the bicubic demo's stage 1 put rocket 5.3 levels low in blue)."""
  assert module.get_config("demo").data.channel_shuffle
  assert not module.get_config().data.channel_shuffle
  # ... and leave out the near-black photos, which still pulled the blue rocket's red down.
  photos = module.get_config("demo").data.bundled_photos
  assert photos and not {"hubble_deep_field.jpg", "retina.jpg"} & set(photos)
  assert not module.get_config().data.bundled_photos  # every photo


@pytest.mark.parametrize("module", [realesrnet_x4plus, realesrgan_x4plus])
def test_real_world_demos_train_on_flat_photos_too(module):
  """Without flat areas at a dark sky's levels, Real-ESRNet's pairs taught the demo to darken
  rocket's sky (benchmarks/realworld_tone.py; configs/realesrnet_x4plus.py)."""
  photos = module.get_config("demo").data.bundled_photos
  assert set(datasets.BUNDLED_FLAT_PHOTOS) <= set(photos)
  bicubic_demo = esrgan_psnr.get_config("demo").data.bundled_photos
  assert not set(datasets.BUNDLED_FLAT_PHOTOS) & set(bicubic_demo)
  assert datasets.bundled_source(photos).num_images == len(photos) == 7


def test_real_esrnet_demo_steps_at_the_yml_rate_with_a_slow_ema():
  demo = realesrnet_x4plus.get_config("demo")
  assert demo.optimizer_g.learning_rate == realesrnet_x4plus.get_config().optimizer_g.learning_rate
  assert demo.train.ema_decay == 0.99


@pytest.mark.parametrize("module", [realesrgan_x4plus, realesrgan_x2plus, realesrgan_x4plus_ldl])
def test_real_esrgan_starts_g_from_the_ema_and_its_demo_moves_gently(module):
  """yml: param_key_g params_ema. The demo's 30 GAN steps at 1e-4 with an EMA of 0.9 darkened
  rocket by up to 7.8 levels; 1e-5 and 0.99 kept it within 2.8 (configs/realesrgan_x4plus.py)."""
  assert module.get_config().generator_init_from_ema
  assert module.get_config().optimizer_g.learning_rate == 1e-4  # the yml's, untouched
  demo = module.get_config("demo")
  assert demo.generator_init_from_ema and demo.train.ema_decay == 0.99
  assert demo.optimizer_g.learning_rate == demo.optimizer_d.learning_rate == 1e-5
  # The other stages keep G's own start: Real-ESRNet from ESRGAN, ESRGAN from its stage 1.
  assert not realesrnet_x4plus.get_config("demo").generator_init_from_ema
  assert not esrgan.get_config("demo").generator_init_from_ema


@pytest.mark.parametrize("field", ["num_feat", "num_block", "num_grow_ch"])
def test_model_sizes_must_be_positive_in_both_modes(field):
  for mode in ("train", "eval"):
    config = esrgan_psnr.get_config("demo")
    config.model[field] = 0
    with pytest.raises(config_checks.ConfigError, match=f"config.model.{field} must be a positive"):
      config_checks.validate(config, 1, mode)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seed_outside_what_a_jax_key_holds_is_named_in_both_modes(seed):
  # 2**32 would silently give seed 0's numbers (a 32-bit key), 2**70 was a traceback.
  for mode in ("train", "eval"):
    config = esrgan_psnr.get_config("demo")
    config.seed = seed
    with pytest.raises(config_checks.ConfigError,
                       match=r"config.seed must be an integer from 0 to 4294967295"):
      config_checks.validate(config, 1, mode)
  config.seed = 2**32 - 1
  config_checks.validate(config, 1, "train")


def test_data_fields_are_named():
  # Moved from the data pipeline, which now checks only the files it reads.
  cases = {"dataset": ("imagenet", "config.data.dataset"),
           "on_small_image": ("crop", "on_small_image"),
           "patch_size": (30, "patch_size=30")}
  for field, (value, expected) in cases.items():
    config = esrgan_psnr.get_config()
    config.data[field] = value
    with pytest.raises(config_checks.ConfigError, match=expected):
      config_checks.validate(config, 1)


@pytest.mark.parametrize("field, value, expected", [
    ("niqe_params", "missing.npz", "config.eval.niqe_params: missing.npz does not exist"),
    ("inception_weights", "nowhere", "config.eval.inception_weights: nowhere does not exist"),
    ("fid_grid", 0, "config.eval.fid_grid must be a positive integer, got 0"),
    ("kid_subsets", -1, "config.eval.kid_subsets must be a positive integer, got -1"),
])
def test_perceptual_metric_fields_fail_before_training(field, value, expected):
  """Read only at the first evaluation, so they are checked before anything compiles."""
  for mode in ("train", "eval"):
    config = esrgan_psnr.get_config("demo")
    config.eval[field] = value
    with pytest.raises(config_checks.ConfigError, match=expected.replace(".", r"\.")):
      config_checks.validate(config, 1, mode)


def test_eval_mode_checks_the_eval_sets_not_the_training_data(tmp_path):
  config = esrgan_psnr.get_config()
  config.data.update(dataset="folder", hr_dir=str(tmp_path / "missing"))
  config_checks.validate(config, 1, "eval")  # eval mode never reads the training data
  with pytest.raises(config_checks.ConfigError, match="config.data.hr_dir"):
    config_checks.validate(config, 1, "train")
  config.data.eval_sets = {"a": {"lr_dir": str(tmp_path)}}
  with pytest.raises(config_checks.ConfigError, match="config.data.eval_sets.a.hr_dir is not set"):
    config_checks.validate(config, 1, "eval")
  config.data.eval_sets = {"set5": {"hr_dir": str(tmp_path / "nope")}}
  with pytest.raises(config_checks.ConfigError, match="config.data.eval_sets.set5.hr_dir"):
    config_checks.validate(config, 1, "eval")


@pytest.mark.parametrize("eval_sets, expected", [
    ({"a": 5}, "config.data.eval_sets.a must be a dict of hr_dir (and lr_dir), got 5"),
    ({"a": {"hr_dir": 5}}, "config.data.eval_sets.a.hr_dir must be a folder's path, got 5"),
    ({"a": {"hr_dir": "x", "lr_dir": ["y"]}},
     "config.data.eval_sets.a.lr_dir must be a folder's path, got ['y']"),
])
def test_eval_sets_of_the_wrong_type_are_one_line(eval_sets, expected):
  """They were an AttributeError or TypeError traceback (issue #27)."""
  config = esrgan_psnr.get_config("demo")
  config.data.eval_sets = eval_sets
  with pytest.raises(config_checks.ConfigError, match=re.escape(expected)):
    config_checks.validate(config, 1, "eval")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("path, value, expected", [
    ("loss.gan_weight", float("nan"), "config.loss.gan_weight must be a finite number, got nan"),
    ("degradation.usm.weight", float("nan"),
     "config.degradation.usm.weight must be a finite number, got nan"),
    ("loss.perceptual_layers.conv1_2", float("inf"),
     "config.loss.perceptual_layers.conv1_2 must be a finite number, got inf"),
    ("degradation.kernel1.sigma", (0.2, float("nan")),
     "config.degradation.kernel1.sigma[1] must be a finite number, got nan"),
])
def test_a_nan_or_infinite_field_is_one_line(mode, path, value, expected):
  """A NaN passed every range check written as a comparison, and trained on NaN (issue #27)."""
  config = esrgan_psnr.get_config("demo")
  *parents, name = path.split(".")
  section = config
  for parent in parents:
    section = section[parent]
  section[name] = value
  with pytest.raises(config_checks.ConfigError, match=re.escape(expected)):
    config_checks.validate(config, 1, mode)


def test_eval_set_without_images_fails_before_training(tmp_path):
  """Found by the first evaluation otherwise, after compiling and training."""
  (tmp_path / "set5").mkdir()
  config = esrgan_psnr.get_config("demo")
  config.data.eval_sets = {"set5": {"hr_dir": str(tmp_path / "set5")}}
  with pytest.raises(config_checks.ConfigError,
                     match=r"^config\.data\.eval_sets\.set5\.hr_dir: .*set5: no image files"):
    config_checks.validate(config, 1, "eval")


def test_lowered_flops_of_a_convolution_are_two_per_multiply_add():
  n, h, w, c_in, c_out, k = 2, 10, 12, 5, 7, 3
  conv = jax.jit(lambda x, kernel: jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  x = jax.ShapeDtypeStruct((n, h, w, c_in), jnp.float32)
  kernel = jax.ShapeDtypeStruct((k, k, c_in, c_out), jnp.float32)
  out_h, out_w = h - k + 1, w - k + 1
  assert flops.flops_of(conv, x, kernel) == 2 * n * out_h * out_w * c_in * c_out * k * k


def test_peak_table_and_mfu():
  assert flops.peak_tflops("NVIDIA H200") == (989.0, 494.5)
  assert flops.peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
  assert flops.peak_tflops("cpu") is None
  assert flops.mfu(1e12, 2.0, 4e12) == pytest.approx(0.5)
  assert flops.mfu(None, 2.0, 4e12) is None


def test_eval_lr_is_checked_in_both_modes():
  assert realesrnet_x4plus.get_config().data.eval_lr == "degradation"
  assert esrgan_psnr.get_config().data.eval_lr == "bicubic"
  for mode in ("train", "eval"):
    config = realesrnet_x4plus.get_config("demo")
    config.data.eval_lr = "jpeg"
    with pytest.raises(config_checks.ConfigError, match=r"config\.data\.eval_lr must be one of "
                       r"\('bicubic', 'degradation'\), got 'jpeg'"):
      config_checks.validate(config, 1, mode)
    config = esrgan_psnr.get_config("demo")
    config.model.scale = 2
    config.data.eval_lr = "degradation"  # the default degradation section is x4's
    with pytest.raises(config_checks.ConfigError, match=r"config\.degradation\.scale=4 must equal "
                       r"config\.model\.scale=2"):
      config_checks.validate(config, 1, mode)
