"""Gradient accumulation and clipping: what an accumulated step equals, the clip, the checks.

Plain SGD with rate 1 makes a step's parameter change its (accumulated) gradient, so comparing
states compares gradients. Bit-exact resume with both on is in tests/training/test_train.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import esrgan_psnr
from esrgan_jax import config_checks
from esrgan_jax.runtime import flops
from esrgan_jax.training import accumulation, optim, sharded_step, steps
from esrgan_jax.training.state import build_networks
from tests.training.test_steps import close, init_state, photo_batch, tiny_config


def sgd_networks(config):
  return build_networks(config)._replace(generator_tx=optax.sgd(1.0),
                                         discriminator_tx=optax.sgd(1.0))


def run_step(config, networks, state, batch, accum_steps):
  config.train.grad_accum_steps = accum_steps
  return jax.jit(steps.make_train_step(networks, config))(state, batch, jax.random.key(1))


def assert_close_trees(actual, expected):
  jax.tree.map(close, actual, expected)


def test_micro_batch_k_holds_rows_k_plus_multiples_of_the_step_count():
  batch = {"x": jnp.arange(6 * 2).reshape(6, 2)}
  micro = accumulation.split(batch, 3)["x"]
  assert micro.shape == (3, 2, 2)
  np.testing.assert_array_equal(micro[1], batch["x"][1::3])


def test_accumulated_psnr_step_is_the_big_batch_step():
  config = tiny_config("psnr")
  config.data.patch_size = 32
  networks = sgd_networks(config)
  state = init_state(networks, config)
  batch = photo_batch(4, patch=32)
  whole, whole_metrics = run_step(config, networks, state, batch, 1)
  accumulated, metrics = run_step(config, networks, state, batch, 4)
  assert_close_trees(accumulated.generator, whole.generator)
  assert_close_trees(accumulated.generator_ema, whole.generator_ema)
  close(metrics["l_pix"], whole_metrics["l_pix"])
  assert int(accumulated.step) == 1


def test_accumulated_real_esrgan_step_is_the_big_batch_step():
  """Plain GAN loss and the U-Net with spectral norm: every loss is a mean over samples and the
  power iteration does not depend on the data, so two micro-batches make the big batch's step,
  the discriminator's vectors included."""
  config = tiny_config("gan", "unet_sn")
  config.data.patch_size = 32
  config.loss.update(gan_type="vanilla", gan_weight=0.1)
  networks = sgd_networks(config)
  state = init_state(networks, config)
  batch = photo_batch(4, 32)
  whole, whole_metrics = run_step(config, networks, state, batch, 1)
  accumulated, metrics = run_step(config, networks, state, batch, 2)
  for field in ("generator", "discriminator", "discriminator_stats", "generator_ema"):
    assert_close_trees(getattr(accumulated, field), getattr(whole, field))
  for name in ("l_g_pix", "l_g_percep", "l_g_gan", "l_d_real", "l_d_fake"):
    close(metrics[name], whole_metrics[name])


def test_accumulated_ragan_step_is_the_mean_of_its_micro_batch_steps():
  """RaGAN's E[C(x)] and BatchNorm's statistics are those of each micro-batch: the step equals
  the mean of the one-micro-batch steps, each from the same starting state (running statistics
  averaged)."""
  config = tiny_config("gan", "vgg_style")
  networks = sgd_networks(config)
  state = init_state(networks, config)
  batch = photo_batch(4)
  accumulated, metrics = run_step(config, networks, state, batch, 2)
  singles = [run_step(config, networks, state, micro, 1)
             for micro in (jax.tree.map(lambda x, k=k: x[k::2], batch) for k in range(2))]
  mean = lambda *trees: jax.tree.map(lambda *leaves: sum(leaves) / len(leaves), *trees)
  for field in ("generator", "discriminator", "discriminator_stats"):
    assert_close_trees(getattr(accumulated, field),
                       mean(*(getattr(single, field) for single, _ in singles)))
  assert_close_trees(metrics, mean(*(single_metrics for _, single_metrics in singles)))


def test_an_accumulated_step_counts_the_flops_of_the_whole_batch():
  """XLA counts a loop's body once: the count of an accumulated step is the one-pass step's."""
  config = tiny_config("psnr")
  config.data.patch_size = 32
  networks = build_networks(config)
  state = jax.eval_shape(lambda: init_state(networks, config))
  arguments = (state, jax.eval_shape(lambda: photo_batch(4, patch=32)),
               jax.eval_shape(lambda: jax.random.key(0)))
  one_pass = sharded_step.step_flops(networks, config, arguments)
  lowered = lambda: jax.jit(steps.make_train_step(networks, config)).lower(*arguments)
  assert one_pass == flops.lowered_flops(lowered())
  config.train.grad_accum_steps = 4
  assert sharded_step.step_flops(networks, config, arguments, lowered()) == one_pass
  assert flops.lowered_flops(lowered()) < 0.5 * one_pass  # what the loop alone would give


def test_clipping_scales_the_gradient_to_the_norm_and_keeps_the_state_layout():
  config = esrgan_psnr.get_config().optimizer_g
  config.update(learning_rate=1.0, b1=0.0, b2=0.0, eps=1.0)  # update -g / (|g| + 1)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.asarray([3.0, -4.0, 0.0])}  # global norm 5
  plain, _ = optim.make_optimizer(config)
  config.clip_grad_norm = 1.0
  clipped, _ = optim.make_optimizer(config)
  # One layout with clipping on or off: a run can resume with the other setting.
  assert jax.tree.structure(clipped.init(params)) == jax.tree.structure(plain.init(params))
  update = lambda tx, g: tx.update(g, tx.init(params), params)[0]["w"]
  np.testing.assert_allclose(update(clipped, grads), [-0.6 / 1.6, 0.8 / 1.8, 0.0], rtol=1e-6)
  np.testing.assert_allclose(update(plain, grads), [-3 / 4, 4 / 5, 0.0], rtol=1e-6)
  small = {"w": jnp.asarray([0.3, -0.4, 0.0])}  # norm 0.5: left alone, bit for bit
  np.testing.assert_array_equal(update(clipped, small), update(plain, small))


@pytest.mark.parametrize("fields, devices, expected", [
    ({"grad_accum_steps": 0}, 1, "config.train.grad_accum_steps must be a positive integer"),
    ({"grad_accum_steps": 3}, 1, r"batch_size=16 must be a multiple of "
                                 r"config.train.grad_accum_steps=3 times the device count \(1\)"),
    ({"grad_accum_steps": 4}, 8, r"grad_accum_steps=4 times the device count \(8\)"),
])
def test_grad_accum_steps_must_divide_the_batch_over_the_devices(fields, devices, expected):
  config = esrgan_psnr.get_config()
  config.train.update(fields)
  with pytest.raises(config_checks.ConfigError, match=expected):
    config_checks.validate(config, devices)
  config.train.grad_accum_steps = 2
  config_checks.validate(config, 8)


def test_clip_grad_norm_must_not_be_negative():
  config = tiny_config("gan")
  for off in (0.0, None):
    config.optimizer_d.clip_grad_norm = off
    config_checks.validate(config, 1)
  config.optimizer_d.clip_grad_norm = -1.0
  with pytest.raises(config_checks.ConfigError, match=r"config.optimizer_d.clip_grad_norm must "
                     r"be >= 0 \(0 or None: no clipping\), got -1.0"):
    config_checks.validate(config, 1)
