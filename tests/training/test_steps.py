"""The train steps: exact BasicSR semantics of the GAN step, and both stages learning."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from skimage import data as skimage_data

from configs import esrgan, esrgan_psnr
from esrgan_jax.training import losses, steps
from esrgan_jax.training.state import build_networks, state_initializer


def tiny_config(stage: str, discriminator: str = "vgg_style"):
  config = esrgan.get_config() if stage == "gan" else esrgan_psnr.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.patch_size = 128
  config.train.batch_size = 2
  if stage == "gan":
    config.discriminator.update(name=discriminator, num_feat=4)
    config.loss.perceptual_layers = {"conv1_2": 0.5, "conv2_2": 1.0}
  return config


def init_state(networks, config):
  # Jitted: XLA drops the forward passes that init runs only to infer shapes.
  return jax.jit(state_initializer(networks, config))(jax.random.key(0))


def photo_batch(batch_size: int, patch: int = 128, scale: int = 4, offset: int = 0):
  """Real photo patches, LR made by block averaging (the step only needs a fixed pairing)."""
  photo = skimage_data.astronaut().astype(np.float32) / 255.0
  hr = np.stack([photo[100 + offset + 40 * i:, 150 + 30 * i:][:patch, :patch]
                 for i in range(batch_size)])
  lr = hr.reshape(batch_size, patch // scale, scale, patch // scale, scale, 3).mean((2, 4))
  return {"lr": jnp.asarray(lr), "hr": jnp.asarray(hr)}


def plain_d_logits(networks, d_params, stats, x):
  """D's logits and its updated BatchNorm / spectral-norm state, applied the plain way."""
  out, updated = networks.discriminator.apply({"params": d_params, "batch_stats": stats}, x,
                                              train=True, mutable=["batch_stats"])
  return out, updated["batch_stats"]


def plain_vgg(networks, state, x):
  return networks.vgg.apply({"params": state.vgg}, x)


def naive_gan_step(state, batch, networks, config):
  """The GAN step written the plain way: separate D passes for each loss, grads by jax.grad."""
  loss = config.loss

  d_logits = functools.partial(plain_d_logits, networks)
  vgg = functools.partial(plain_vgg, networks, state)

  def g_loss(g_params):
    sr = networks.generator.apply({"params": g_params}, batch["lr"])
    real, stats = d_logits(state.discriminator, state.discriminator_stats, batch["hr"])
    fake, _ = d_logits(state.discriminator, stats, sr)
    return (loss.pixel_weight * losses.pixel_loss(sr, batch["hr"])
            + loss.perceptual_weight * losses.perceptual_loss(vgg(sr), vgg(batch["hr"]),
                                                              loss.perceptual_layers)
            + loss.gan_weight * losses.generator_ragan_loss(jax.lax.stop_gradient(real), fake))

  def d_loss(d_params):
    sr = jax.lax.stop_gradient(networks.generator.apply({"params": state.generator},
                                                        batch["lr"]))
    real, stats = d_logits(d_params, state.discriminator_stats, batch["hr"])
    fake, stats = d_logits(d_params, stats, sr)
    return sum(losses.discriminator_ragan_loss(real, fake)), stats

  g_grads = jax.grad(g_loss)(state.generator)
  d_grads, stats = jax.grad(d_loss, has_aux=True)(state.discriminator)
  return g_grads, d_grads, stats


def close(actual, expected):
  """Float32 sums in another order: tolerance relative to each leaf's largest entry."""
  np.testing.assert_allclose(actual, expected, rtol=1e-3,
                             atol=1e-3 * float(np.max(np.abs(expected))) + 1e-12)


def assert_sgd_updates(new_state, state, g_grads, d_grads, d_stats):
  """After one step of plain SGD with rate 1, each parameter moved by minus its gradient."""
  jax.tree.map(lambda new, old, grad: close(old - new, grad), new_state.generator,
               state.generator, g_grads)
  jax.tree.map(lambda new, old, grad: close(old - new, grad), new_state.discriminator,
               state.discriminator, d_grads)
  jax.tree.map(close, new_state.discriminator_stats, d_stats)


@pytest.mark.parametrize("discriminator", ["vgg_style", "unet_sn"])
def test_gan_step_equals_plain_gradients(discriminator):
  config = tiny_config("gan", discriminator)
  patch = 128 if discriminator == "vgg_style" else 32
  config.data.patch_size = patch
  # Plain SGD with rate 1 makes each parameter update equal minus its gradient.
  networks = build_networks(config)._replace(generator_tx=optax.sgd(1.0),
                                             discriminator_tx=optax.sgd(1.0))
  state = init_state(networks, config)
  batch = photo_batch(2, patch)
  naive_step = jax.jit(lambda state, batch: naive_gan_step(state, batch, networks, config))
  g_grads, d_grads, stats = naive_step(state, batch)
  step = jax.jit(steps.make_train_step(networks, config))
  new_state, metrics = step(state, batch, jax.random.key(1))
  assert_sgd_updates(new_state, state, g_grads, d_grads, stats)
  decay = config.train.ema_decay
  jax.tree.map(close, new_state.generator_ema,
               jax.tree.map(lambda e, g: decay * e + (1 - decay) * g, state.generator_ema,
                            new_state.generator))
  assert int(new_state.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_the_step_closes_over_settings_read_once_not_the_config():
  config = tiny_config("gan")
  train_step = steps.make_train_step(None, config)
  settings = train_step.keywords["settings"]
  assert set(train_step.keywords) == {"networks", "settings"}
  assert settings.perceptual_layers == (("conv1_2", 0.5), ("conv2_2", 1.0))
  hash(settings)  # plain immutable values
  config.loss.gan_weight = 1.0  # a later change to the config cannot reach a traced step
  assert settings.gan_weight == 5e-3


def test_psnr_stage_overfits_fixed_patches():
  config = tiny_config("psnr")
  config.data.patch_size = 32
  config.optimizer_g.learning_rate = 2e-3
  networks = build_networks(config)
  state = init_state(networks, config)
  batch = photo_batch(4, patch=32)
  step = jax.jit(steps.make_train_step(networks, config), donate_argnums=0)
  history = []
  for i in range(60):
    state, metrics = step(state, batch, jax.random.key(i))
    history.append(float(metrics["l_pix"]))
  assert np.all(np.isfinite(history))
  assert np.mean(history[-5:]) < 0.6 * np.mean(history[:5])


def test_gan_stage_losses_fall_and_stay_finite():
  config = tiny_config("gan")
  config.optimizer_g.learning_rate = 1e-3
  config.optimizer_d.learning_rate = 1e-4
  networks = build_networks(config)
  state = init_state(networks, config)
  batch = photo_batch(2)
  step = jax.jit(steps.make_train_step(networks, config), donate_argnums=0)
  history = []
  for i in range(15):
    state, metrics = step(state, batch, jax.random.key(i))
    history.append({k: float(v) for k, v in metrics.items()})
  for row in history:
    assert all(np.isfinite(v) for v in row.values()), row
  first = np.mean([r["l_g_pix"] + r["l_g_percep"] for r in history[:3]])
  last = np.mean([r["l_g_pix"] + r["l_g_percep"] for r in history[-3:]])
  assert last < first
  assert history[-1]["lr_d"] == pytest.approx(1e-4)


def test_vanilla_gan_step_is_real_esrgans_order_and_targets():
  """Real-ESRGAN's step written the plain way: G's loss with D frozen (its pass advancing the
  spectral-norm vectors), L1 and perceptual against hr_usm; then D's real pass on the
  unsharpened hr and its fake pass on the stopped output, each from the previous vectors."""
  config = tiny_config("gan", "unet_sn")
  config.data.patch_size = 32
  config.loss.update(gan_type="vanilla", gan_weight=0.1, l1_gt_usm=True, percep_gt_usm=True,
                     gan_gt_usm=False)
  networks = build_networks(config)._replace(generator_tx=optax.sgd(1.0),
                                             discriminator_tx=optax.sgd(1.0))
  state = init_state(networks, config)
  batch = photo_batch(2, 32)
  batch["hr_usm"] = jnp.clip(batch["hr"] * 1.3 - 0.1, 0, 1)  # any target other than hr
  loss = config.loss
  bce = lambda logits, label: jnp.mean(optax.sigmoid_binary_cross_entropy(
      logits, jnp.full_like(logits, label)))

  d_logits = functools.partial(plain_d_logits, networks)
  vgg = functools.partial(plain_vgg, networks, state)

  def g_loss(g_params):
    sr = networks.generator.apply({"params": g_params}, batch["lr"])
    fake, stats = d_logits(state.discriminator, state.discriminator_stats, sr)
    total = (loss.pixel_weight * jnp.mean(jnp.abs(sr - batch["hr_usm"]))
             + loss.perceptual_weight * losses.perceptual_loss(vgg(sr), vgg(batch["hr_usm"]),
                                                               loss.perceptual_layers)
             + loss.gan_weight * bce(fake, 1.0))
    return total, (sr, stats)

  g_grads, (sr, stats_g) = jax.jit(jax.grad(g_loss, has_aux=True))(state.generator)

  def d_loss(d_params):
    real, stats = d_logits(d_params, stats_g, batch["hr"])
    fake, stats = d_logits(d_params, stats, jax.lax.stop_gradient(sr))
    return bce(real, 1.0) + bce(fake, 0.0), stats

  d_grads, stats = jax.jit(jax.grad(d_loss, has_aux=True))(state.discriminator)
  new_state, metrics = jax.jit(steps.make_train_step(networks, config))(
      state, batch, jax.random.key(1))

  assert_sgd_updates(new_state, state, g_grads, d_grads, stats)
  l1 = lambda target: loss.pixel_weight * jnp.mean(jnp.abs(sr - target))
  close(metrics["l_g_pix"], l1(batch["hr_usm"]))
  assert abs(float(metrics["l_g_pix"]) - float(l1(batch["hr"]))) > 1e-2 * float(l1(batch["hr"]))
  real_logits, _ = d_logits(state.discriminator, stats_g, batch["hr"])
  close(metrics["out_d_real"], jnp.mean(real_logits))
