"""configs/realesr_compact_x4.py and configs/span_x4.py: every variant builds, passes the config
checks and builds its networks; the demos size every architecture."""

import math

import jax
import jax.numpy as jnp
import pytest

from configs import default, esrgan_psnr, fast_realworld, realesr_compact_x4, span_x4
from esrgan_jax import config_checks
from esrgan_jax.training import state

FAST_MODULES = (realesr_compact_x4, span_x4)
VARIANTS = ("", "gan", "demo")


def _param_count(config) -> int:
  generator = state.build_generator(config)
  lr = jnp.zeros((1, 8, 8, config.model.num_in_ch), jnp.float32)
  shapes = jax.eval_shape(generator.init, jax.random.PRNGKey(0), lr)
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize("module", FAST_MODULES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_pass_the_checks_and_build_their_networks(module, variant):
  config = module.get_config(variant)
  for mode in ("train", "eval"):
    config_checks.validate(config, 1, mode)
  schema = default.get_config()
  for section in ("model", "data", "train", "loss", "degradation"):
    assert set(config[section].keys()) == set(schema[section].keys()), section
  networks = state.build_networks(config)
  assert config.stage == ("gan" if variant == "gan" else "psnr")
  assert (networks.discriminator is not None) == (variant == "gan")
  assert config.data.lr_source == "degradation" and config.data.eval_lr == "degradation"
  assert config.degradation.pool_size % config.degradation.pool_batch_size == 0
  assert _param_count(config) > 0


def test_full_sizes_are_the_published_networks():
  compact = realesr_compact_x4.get_config()
  assert state.generator_arch(compact) == {
      "arch": "srvgg_compact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 32,
      "scale": 4, "act_type": "prelu"}
  # realesr-general-x4v3.pth holds 1,213,296 parameters.
  assert _param_count(compact) == 1_213_296
  span = span_x4.get_config("gan")
  assert state.generator_arch(span)["feature_channels"] == 48
  assert state.generator_arch(span)["norm"] is False


def test_template_figures_reach_the_config():
  config = realesr_compact_x4.get_config()
  assert (config.train.batch_size, config.data.patch_size) == (16, 384)
  assert config.optimizer_g.learning_rate == 2e-4 and config.train.num_steps == 450_000
  assert config.loss.pixel_criterion == "charbonnier"
  gan = span_x4.get_config("gan")
  assert (gan.optimizer_g.learning_rate, gan.optimizer_d.learning_rate) == (1e-4, 1e-4)
  assert gan.discriminator.name == "unet_sn" and gan.loss.gan_type == "vanilla"
  assert gan.data.patch_size == 256 and gan.train.num_steps == 500_000


def test_pool_is_the_template_queue_rounded_up_to_the_batch():
  assert fast_realworld.pool_size(8) == 120
  assert fast_realworld.pool_size(16) == 128
  assert realesr_compact_x4.get_config("gan").degradation.pool_size == 120
  assert span_x4.get_config().degradation.pool_size == 128


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match=r"configs/span_x4\.py: unknown variant 'x'"):
    span_x4.get_config("x")


@pytest.mark.parametrize("arch", ["srvgg_compact", "span"])
def test_bicubic_demo_gives_every_architecture_its_demo_size(arch):
  """`configs/esrgan_psnr.py:demo --config.model.arch=X` stays a demo for X."""
  config = esrgan_psnr.get_config("demo")
  config.model.arch = arch
  config_checks.validate(config, 1, "train")
  record = state.generator_arch(config)
  if arch == "srvgg_compact":
    assert (record["num_feat"], record["num_conv"]) == (16, 8)
  else:
    assert record["feature_channels"] == default.DEMO_SPAN_CHANNELS
