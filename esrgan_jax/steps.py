"""Pure train steps, `train_step(state, batch, rng) -> (state, metrics)`, one per ESRGAN stage.

A step sees arrays only. The GAN step follows BasicSR's ESRGANModel exactly (docs/design.md): one
generator output per step; G's update sees D's parameters from before D's update; D's loss sees the
generator output stopped; then the EMA update. It computes each discriminator pass once and reuses
it for both updates, which is exact because both updates see the same D parameters and inputs.
"""

import functools
import jax
import jax.numpy as jnp
import ml_collections
import optax

from esrgan_jax import losses
from esrgan_jax.train_state import Networks, TrainState


def ema_update(ema_params, params, decay: float):
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def _apply_updates(tx, grads, opt_state, params):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _generate(networks: Networks, params, lr_images):
  return networks.generator.apply({"params": params}, lr_images).astype(jnp.float32)


def psnr_train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
                    networks: Networks, config: ml_collections.ConfigDict):
  """Stage 1: L1 (or the configured pixel criterion) on the generator alone."""
  del rng  # the PSNR stage is deterministic given the batch

  def loss_fn(params):
    sr = _generate(networks, params, batch["lr"])
    return config.loss.pixel_weight * losses.pixel_loss(sr, batch["hr"],
                                                        config.loss.pixel_criterion)

  loss, grads = jax.value_and_grad(loss_fn)(state.generator)
  generator, opt_state = _apply_updates(networks.generator_tx, grads, state.generator_opt_state,
                                        state.generator)
  new_state = state.replace(
      step=state.step + 1, generator=generator, generator_opt_state=opt_state,
      generator_ema=ema_update(state.generator_ema, generator, config.train.ema_decay))
  metrics = {"l_pix": loss, "lr_g": networks.generator_schedule(state.step)}
  return new_state, metrics


def gan_train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
                   networks: Networks, config: ml_collections.ConfigDict):
  """Stage 2: G update (percep + lambda * RaGAN + eta * pixel), then D update, then EMA."""
  del rng  # no stochastic layers in ESRGAN's networks
  loss_config = config.loss
  lr_images, hr = batch["lr"], batch["hr"]
  sr, generator_vjp = jax.vjp(lambda p: _generate(networks, p, lr_images), state.generator)

  def discriminate(d_params, d_stats, images):
    logits, updated = networks.discriminator.apply(
        {"params": d_params, "batch_stats": d_stats}, images, train=True,
        mutable=["batch_stats"])
    return logits, updated["batch_stats"]

  # Real and fake go through D in separate calls, as in BasicSR, so BatchNorm sees each batch alone.
  real_logits, real_vjp, stats_after_real = jax.vjp(
      lambda d: discriminate(d, state.discriminator_stats, hr), state.discriminator, has_aux=True)
  fake_logits, fake_vjp, d_stats = jax.vjp(
      lambda d, x: discriminate(d, stats_after_real, x), state.discriminator, sr, has_aux=True)

  def vgg_features(images):
    return networks.vgg.apply({"params": state.vgg}, images)

  hr_features = jax.lax.stop_gradient(vgg_features(hr))

  def generator_loss(sr, fake_logits):
    l_pix = loss_config.pixel_weight * losses.pixel_loss(sr, hr, loss_config.pixel_criterion)
    l_percep = loss_config.perceptual_weight * losses.perceptual_loss(
        vgg_features(sr), hr_features, loss_config.perceptual_layers,
        loss_config.perceptual_criterion)
    l_gan = loss_config.gan_weight * losses.generator_ragan_loss(real_logits, fake_logits)
    return l_pix + l_percep + l_gan, {"l_g_pix": l_pix, "l_g_percep": l_percep, "l_g_gan": l_gan}

  (g_loss, g_metrics), (grad_sr, grad_fake_logits) = jax.value_and_grad(
      generator_loss, argnums=(0, 1), has_aux=True)(sr, fake_logits)
  _, grad_sr_through_d = fake_vjp(grad_fake_logits)
  (g_grads,) = generator_vjp(grad_sr + grad_sr_through_d)

  def discriminator_loss(real_logits, fake_logits):
    l_real, l_fake = losses.discriminator_ragan_loss(real_logits, fake_logits)
    return l_real + l_fake, {"l_d_real": l_real, "l_d_fake": l_fake}

  (d_loss, d_metrics), (d_grad_real_logits, d_grad_fake_logits) = jax.value_and_grad(
      discriminator_loss, argnums=(0, 1), has_aux=True)(real_logits, fake_logits)
  (d_grads_real,) = real_vjp(d_grad_real_logits)
  d_grads_fake, _ = fake_vjp(d_grad_fake_logits)
  d_grads = jax.tree.map(jnp.add, d_grads_real, d_grads_fake)

  generator, g_opt_state = _apply_updates(networks.generator_tx, g_grads,
                                          state.generator_opt_state, state.generator)
  discriminator, d_opt_state = _apply_updates(networks.discriminator_tx, d_grads,
                                              state.discriminator_opt_state, state.discriminator)
  new_state = state.replace(
      step=state.step + 1,
      generator=generator, generator_opt_state=g_opt_state,
      discriminator=discriminator, discriminator_stats=d_stats,
      discriminator_opt_state=d_opt_state,
      generator_ema=ema_update(state.generator_ema, generator, config.train.ema_decay))
  metrics = {
      **g_metrics, **d_metrics,
      "l_g_total": g_loss, "l_d_total": d_loss,
      "out_d_real": jnp.mean(real_logits), "out_d_fake": jnp.mean(fake_logits),
      "lr_g": networks.generator_schedule(state.step),
      "lr_d": networks.discriminator_schedule(state.step),
  }
  return new_state, metrics


def make_train_step(networks: Networks, config: ml_collections.ConfigDict):
  """The stage's step with its static half bound: `train_step(state, batch, rng)`."""
  step_fn = gan_train_step if config.stage == "gan" else psnr_train_step
  return functools.partial(step_fn, networks=networks, config=config)
