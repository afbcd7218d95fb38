"""LDL's artifacts term in both GAN steps (config.loss.ldl_weight): the term and its gradient
exactly, the EMA generator's output on the same LR, no EMA forward when it is off, and tiny
training runs of configs/esrgan_ldl.py and configs/realesrgan_x4plus_ldl.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import esrgan_ldl, realesrgan_x4plus_ldl
from esrgan_jax import config_checks
from esrgan_jax.training import losses, steps, train
from esrgan_jax.training.state import build_networks
from tests.training.test_steps import close, init_state, photo_batch, tiny_config

PATCH = 32  # the U-Net discriminator takes any size; both GAN types run with it here
# The term is ~1e-4 and its parameter gradients ~1e-7: weighted up, its share of an SGD update
# stands far above the float32 rounding of the parameters it is read back from.
LARGE_WEIGHT = 1e5


def ldl_setup(gan_type: str, ldl_weight: float):
  config = tiny_config("gan", "unet_sn")
  config.data.patch_size = PATCH
  config.loss.update(gan_type=gan_type, ldl_weight=ldl_weight, l1_gt_usm=True)
  # Plain SGD with rate 1: a parameter's update is minus its gradient.
  networks = build_networks(config)._replace(generator_tx=optax.sgd(1.0),
                                             discriminator_tx=optax.sgd(1.0))
  state = init_state(networks, config)
  # An EMA generator apart from G, so that the artifact map's mask takes both branches.
  noise = jax.tree.map(lambda p: 0.05 * jnp.abs(p).mean() * jnp.sign(jnp.sin(
      jnp.arange(p.size, dtype=jnp.float32) * 7.1)).reshape(p.shape), state.generator)
  state = state.replace(generator_ema=jax.tree.map(jnp.add, state.generator, noise))
  batch = photo_batch(2, PATCH)
  batch["hr_usm"] = jnp.clip(batch["hr"] * 1.3 - 0.1, 0, 1)  # the map must not use it
  return config, networks, state, batch


@pytest.mark.parametrize("gan_type", ["ragan", "vanilla"])
def test_artifacts_term_adds_its_own_gradient_with_the_ema_output_of_the_same_lr(gan_type):
  config, networks, state, batch = ldl_setup(gan_type, ldl_weight=LARGE_WEIGHT)
  on = jax.jit(steps.make_train_step(networks, config))
  config.loss.ldl_weight = 0.0
  off = jax.jit(steps.make_train_step(networks, config))
  new_on, metrics_on = on(state, batch, jax.random.key(1))
  new_off, metrics_off = off(state, batch, jax.random.key(1))

  generate = lambda params: networks.generator.apply({"params": params}, batch["lr"])
  ema_sr = generate(state.generator_ema)
  weight = losses.artifact_map(batch["hr"], generate(state.generator), ema_sr)
  assert 0.05 < float(jnp.mean(weight == 0)) < 0.95
  term, grads = jax.jit(jax.value_and_grad(
      lambda p: losses.ldl_loss(batch["hr"], generate(p), ema_sr)))(state.generator)
  close(metrics_on["l_g_artifacts"], LARGE_WEIGHT * term)
  assert "l_g_artifacts" not in metrics_off
  close(metrics_on["l_g_total"] - metrics_off["l_g_total"], LARGE_WEIGHT * term)
  # G: the two updates differ by the term's gradient; D sees G's output alone.
  jax.tree.map(lambda a, b, g: close(b - a, LARGE_WEIGHT * g), new_on.generator,
               new_off.generator, grads)
  jax.tree.map(np.testing.assert_array_equal, new_on.discriminator, new_off.discriminator)
  for name in ("l_g_pix", "l_g_percep", "l_g_gan", "l_d_real", "l_d_fake"):
    assert float(metrics_on[name]) == float(metrics_off[name]), name


def conv_count(function, *args):
  return str(jax.make_jaxpr(function)(*args)).count("conv_general_dilated")


@pytest.mark.parametrize("gan_type", ["ragan", "vanilla"])
def test_the_step_without_ldl_holds_no_ema_forward(gan_type):
  config, networks, state, batch = ldl_setup(gan_type, ldl_weight=1.0)
  with_ldl = conv_count(steps.make_train_step(networks, config), state, batch, jax.random.key(0))
  config.loss.ldl_weight = 0.0
  without = conv_count(steps.make_train_step(networks, config), state, batch, jax.random.key(0))
  forward = conv_count(lambda p: networks.generator.apply({"params": p}, batch["lr"]),
                       state.generator)
  assert forward > 0 and with_ldl - without == forward


@pytest.mark.parametrize("ldl_weight, ema_decay, message", [
    (-0.5, 0.999, "config.loss.ldl_weight must be a number >= 0, got -0.5"),
    (1.0, 0.0, "config.loss.ldl_weight=1.0 needs the EMA generator: set config.train.ema_decay"),
])
def test_ldl_weight_must_be_non_negative_and_needs_the_ema(ldl_weight, ema_decay, message):
  config = esrgan_ldl.get_config()
  config.loss.ldl_weight = ldl_weight
  config.train.ema_decay = ema_decay
  with pytest.raises(config_checks.ConfigError, match=message) as error:
    config_checks.validate(config, 1)
  assert "\n" not in str(error.value)
  config.loss.ldl_weight = 0.0
  config_checks.validate(config, 1)  # without LDL, no EMA is fine


def test_ldl_configs_carry_the_published_figures():
  synthetic, realworld = esrgan_ldl.get_config(), realesrgan_x4plus_ldl.get_config()
  for config in (synthetic, realworld):
    assert config.stage == "gan" and config.loss.ldl_weight == 1.0
    assert config.train.ema_decay == 0.999 and config.loss.pixel_weight == 1e-2
    assert dict(config.loss.perceptual_layers) == {
        "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    config_checks.validate(config, 1)
  assert synthetic.loss.gan_type == "ragan" and synthetic.loss.gan_weight == 5e-3
  assert synthetic.train.batch_size == 64
  assert synthetic.train.num_steps == 300_000 and synthetic.optimizer_g.gamma == 1.0
  assert synthetic.discriminator.name == "vgg_style" and synthetic.data.patch_size == 128
  assert realworld.loss.gan_type == "vanilla" and realworld.loss.gan_weight == 0.1
  assert realworld.train.batch_size == 16 and realworld.degradation.pool_batch_size == 4
  loss = realworld.loss
  assert (loss.l1_gt_usm, loss.percep_gt_usm, loss.gan_gt_usm) == (True, True, False)
  assert realworld.degradation.pool_size == 180 and realworld.data.patch_size == 256


def tiny_run(config, workdir):
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.update(eval_max_images=1, num_workers=2)
  config.eval.num_comparison_images = 1
  config.discriminator.num_feat = 4
  config.loss.perceptual_layers = {"conv1_2": 1.0}
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=100,
                      checkpoint_every_steps=2)
  config_checks.validate(config, 1)
  state = train.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 2
  leaves = jax.tree.leaves(jax.device_get(state.replace(vgg=None)))
  assert all(np.isfinite(leaf).all() for leaf in leaves if np.asarray(leaf).dtype.kind == "f")
  results = json.loads((workdir / "eval" / "eval_results.json").read_text())
  assert np.isfinite(results["sets"]["bundled"]["mean"]["psnr_y"])


@pytest.mark.usefixtures("persistent_compilation_cache")
def test_tiny_esrgan_ldl_run(tmp_path):
  tiny_run(esrgan_ldl.get_config("demo"), tmp_path)


@pytest.mark.usefixtures("persistent_compilation_cache")
def test_tiny_realesrgan_ldl_run(tmp_path):
  config = realesrgan_x4plus_ldl.get_config("demo")
  config.data.update(crop_pad_size=48, patch_size=32)
  config.degradation.update(pool_batch_size=1, pool_size=2)
  tiny_run(config, tmp_path)
