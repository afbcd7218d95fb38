"""Pure train steps, `train_step(state, batch, rng) -> (state, metrics)`, one per ESRGAN stage.

A step sees arrays only. The GAN step follows BasicSR's ESRGANModel exactly (docs/design.md): one
generator output per step; G's update sees D's parameters from before D's update; D's loss sees the
generator output stopped; then the EMA update. It computes each discriminator pass once and reuses
it for both updates, which is exact because both updates see the same D parameters and inputs.

With config.loss.gan_type='vanilla' the GAN step is Real-ESRGAN's RealESRGANModel instead: the
plain GAN loss, and its three discriminator passes in its order: G's update first, with D frozen,
from C(G(x)); then D's real pass, then its fake pass on the stopped output. Each pass advances the
spectral-norm power iteration (the U-Net D's batch_stats) from the previous one, as each PyTorch
forward in train mode does, so the step is exact for spectral norm too. Real-ESRGAN's targets:
L1 / perceptual / D's real input are batch['hr_usm'] where l1_gt_usm / percep_gt_usm /
gan_gt_usm say so (the USM-sharpened GT of esrgan_jax/training/realworld_batch.py), else batch['hr'].

With config.loss.ldl_weight > 0 both GAN steps add LDL's artifacts term (losses.ldl_loss) to G's
loss, as csjliang/LDL's ESRGANArtifactsDisModel and RealESRGANArtifactsDisModel do: the map is of
batch['hr'] (never the USM GT), the output, and the EMA generator's output on the same LR, computed
from the EMA params at the step's start, stopped. With 0 the step is the program it was, with no
EMA forward.

Each step computes its gradients (and the discriminator's new statistics) from the batch, then
updates once. With config.train.grad_accum_steps > 1 the gradients are the mean over that many
micro-batches of the batch (esrgan_jax/training/accumulation.py, which says what RaGAN's batch means
and BatchNorm see then); with 1 the step is the program it always was.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from esrgan_jax.training import accumulation, losses
from esrgan_jax.training.state import Networks, TrainState


class StepSettings(NamedTuple):
  """The config fields a step reads, as plain Python values read once outside the trace, so
  the jitted step never closes over the (mutable) ConfigDict."""
  ema_decay: float
  pixel_weight: float
  pixel_criterion: str
  perceptual_weight: float
  perceptual_layers: tuple[tuple[str, float], ...]  # (VGG19 layer, weight) pairs
  perceptual_criterion: str
  gan_weight: float
  l1_gt_usm: bool
  percep_gt_usm: bool
  gan_gt_usm: bool
  grad_accum_steps: int
  ldl_weight: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "StepSettings":
    loss = config.loss
    return cls(ema_decay=config.train.ema_decay, pixel_weight=loss.pixel_weight,
               pixel_criterion=loss.pixel_criterion, perceptual_weight=loss.perceptual_weight,
               perceptual_layers=tuple(loss.perceptual_layers.items()),
               perceptual_criterion=loss.perceptual_criterion, gan_weight=loss.gan_weight,
               l1_gt_usm=loss.l1_gt_usm, percep_gt_usm=loss.percep_gt_usm,
               gan_gt_usm=loss.gan_gt_usm, grad_accum_steps=config.train.grad_accum_steps,
               ldl_weight=loss.ldl_weight)


def ema_update(ema_params, params, decay: float):
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def _apply_updates(tx, grads, opt_state, params):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _generate(networks: Networks, params, lr_images):
  return networks.generator.apply({"params": params}, lr_images).astype(jnp.float32)


def _target(batch, use_usm: bool):
  return batch["hr_usm"] if use_usm else batch["hr"]


def _ema_output(networks: Networks, state: TrainState, lr_images, settings: StepSettings):
  """The EMA generator's output for LDL's artifact map, stopped; None when LDL is off, so that
  the step then holds no EMA forward at all."""
  if settings.ldl_weight <= 0:
    return None
  return jax.lax.stop_gradient(_generate(networks, state.generator_ema, lr_images))


def _add_artifacts_term(total, metrics, sr, ema_sr, batch, settings: StepSettings):
  """G's loss and metrics with LDL's weighted artifacts term added (unchanged without it)."""
  if ema_sr is None:
    return total, metrics
  l_artifacts = settings.ldl_weight * losses.ldl_loss(batch["hr"], sr, ema_sr)
  return total + l_artifacts, {**metrics, "l_g_artifacts": l_artifacts}


def _discriminate(networks: Networks, d_params, d_stats, images):
  logits, updated = networks.discriminator.apply(
      {"params": d_params, "batch_stats": d_stats}, images, train=True, mutable=["batch_stats"])
  return logits, updated["batch_stats"]


def _content_losses(networks: Networks, state: TrainState, sr, batch, settings: StepSettings):
  """(weighted L1, weighted perceptual) of sr against their targets; targets' features stopped."""
  vgg_features = lambda images: networks.vgg.apply({"params": state.vgg}, images)
  l_pix = settings.pixel_weight * losses.pixel_loss(
      sr, _target(batch, settings.l1_gt_usm), settings.pixel_criterion)
  percep_features = jax.lax.stop_gradient(
      vgg_features(_target(batch, settings.percep_gt_usm)))
  l_percep = settings.perceptual_weight * losses.perceptual_loss(
      vgg_features(sr), percep_features, dict(settings.perceptual_layers),
      settings.perceptual_criterion)
  return l_pix, l_percep


def _gan_step(gradients, state: TrainState, batch, networks: Networks, settings: StepSettings):
  """Both GAN steps end alike: `gradients(state, batch) -> ((G grads, D grads, D statistics),
  metrics)`, accumulated; G's and D's updates from the step's start, then the EMA."""
  (g_grads, d_grads, d_stats), metrics = accumulation.accumulate(
      functools.partial(gradients, state, networks=networks, settings=settings), batch,
      settings.grad_accum_steps)
  generator, g_opt_state = _apply_updates(networks.generator_tx, g_grads,
                                          state.generator_opt_state, state.generator)
  discriminator, d_opt_state = _apply_updates(networks.discriminator_tx, d_grads,
                                              state.discriminator_opt_state, state.discriminator)
  new_state = state.replace(
      step=state.step + 1,
      generator=generator, generator_opt_state=g_opt_state,
      discriminator=discriminator, discriminator_stats=d_stats,
      discriminator_opt_state=d_opt_state,
      generator_ema=ema_update(state.generator_ema, generator, settings.ema_decay))
  return new_state, {**metrics, "lr_g": networks.generator_schedule(state.step),
                     "lr_d": networks.discriminator_schedule(state.step)}


def psnr_train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
                    networks: Networks, settings: StepSettings):
  """Stage 1: L1 (or the configured pixel criterion) on the generator alone."""
  del rng  # the PSNR stage is deterministic given the batch

  def gradients(batch):
    target = _target(batch, settings.l1_gt_usm)

    def loss_fn(params):
      sr = _generate(networks, params, batch["lr"])
      return settings.pixel_weight * losses.pixel_loss(sr, target, settings.pixel_criterion)

    loss, grads = jax.value_and_grad(loss_fn)(state.generator)
    return grads, {"l_pix": loss}

  grads, metrics = accumulation.accumulate(gradients, batch, settings.grad_accum_steps)
  generator, opt_state = _apply_updates(networks.generator_tx, grads, state.generator_opt_state,
                                        state.generator)
  new_state = state.replace(
      step=state.step + 1, generator=generator, generator_opt_state=opt_state,
      generator_ema=ema_update(state.generator_ema, generator, settings.ema_decay))
  return new_state, {**metrics, "lr_g": networks.generator_schedule(state.step)}


def gan_train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
                   networks: Networks, settings: StepSettings):
  """Stage 2: G update (percep + lambda * RaGAN + eta * pixel), then D update, then EMA."""
  del rng  # no stochastic layers in ESRGAN's networks
  return _gan_step(_ragan_gradients, state, batch, networks, settings)


def _ragan_gradients(state: TrainState, batch, *, networks: Networks, settings: StepSettings):
  lr_images, hr = batch["lr"], _target(batch, settings.gan_gt_usm)
  sr, generator_vjp = jax.vjp(lambda p: _generate(networks, p, lr_images), state.generator)
  ema_sr = _ema_output(networks, state, lr_images, settings)

  discriminate = functools.partial(_discriminate, networks)

  # Real and fake go through D in separate calls, as in BasicSR, so BatchNorm sees each batch alone.
  real_logits, real_vjp, stats_after_real = jax.vjp(
      lambda d: discriminate(d, state.discriminator_stats, hr), state.discriminator, has_aux=True)
  fake_logits, fake_vjp, d_stats = jax.vjp(
      lambda d, x: discriminate(d, stats_after_real, x), state.discriminator, sr, has_aux=True)

  def generator_loss(sr, fake_logits):
    l_pix, l_percep = _content_losses(networks, state, sr, batch, settings)
    l_gan = settings.gan_weight * losses.generator_ragan_loss(real_logits, fake_logits)
    return _add_artifacts_term(l_pix + l_percep + l_gan,
                               {"l_g_pix": l_pix, "l_g_percep": l_percep, "l_g_gan": l_gan},
                               sr, ema_sr, batch, settings)

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

  metrics = {**g_metrics, **d_metrics, "l_g_total": g_loss, "l_d_total": d_loss,
             "out_d_real": jnp.mean(real_logits), "out_d_fake": jnp.mean(fake_logits)}
  return (g_grads, d_grads, d_stats), metrics


def vanilla_gan_train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
                           networks: Networks, settings: StepSettings):
  """Stage 2 of Real-ESRGAN: G (L1 + perceptual + weight * BCE(C(G(x)), 1)) with D frozen, then
  D (BCE(C(xr), 1) + BCE(C(G(x) stopped), 0)), then EMA; see the module docstring."""
  del rng
  return _gan_step(_vanilla_gradients, state, batch, networks, settings)


def _vanilla_gradients(state: TrainState, batch, *, networks: Networks, settings: StepSettings):
  d_params = state.discriminator
  ema_sr = _ema_output(networks, state, batch["lr"], settings)

  def generator_loss(g_params):
    sr = _generate(networks, g_params, batch["lr"])
    l_pix, l_percep = _content_losses(networks, state, sr, batch, settings)
    fake_logits, stats = _discriminate(networks, d_params, state.discriminator_stats, sr)
    l_gan = settings.gan_weight * losses.generator_gan_loss(fake_logits)
    total, metrics = _add_artifacts_term(
        l_pix + l_percep + l_gan, {"l_g_pix": l_pix, "l_g_percep": l_percep, "l_g_gan": l_gan},
        sr, ema_sr, batch, settings)
    return total, (sr, stats, metrics)

  (g_loss, (sr, stats, g_metrics)), g_grads = jax.value_and_grad(
      generator_loss, has_aux=True)(state.generator)
  sr = jax.lax.stop_gradient(sr)
  real = _target(batch, settings.gan_gt_usm)

  def discriminator_loss(d_params):
    real_logits, stats_real = _discriminate(networks, d_params, stats, real)
    fake_logits, stats_fake = _discriminate(networks, d_params, stats_real, sr)
    l_real, l_fake = losses.discriminator_gan_loss(real_logits, fake_logits)
    metrics = {"l_d_real": l_real, "l_d_fake": l_fake,
               "out_d_real": jnp.mean(real_logits), "out_d_fake": jnp.mean(fake_logits)}
    return l_real + l_fake, (stats_fake, metrics)

  (d_loss, (d_stats, d_metrics)), d_grads = jax.value_and_grad(
      discriminator_loss, has_aux=True)(d_params)
  metrics = {**g_metrics, **d_metrics, "l_g_total": g_loss, "l_d_total": d_loss}
  return (g_grads, d_grads, d_stats), metrics


def make_train_step(networks: Networks, config: ml_collections.ConfigDict):
  """The stage's step with its static half bound: `train_step(state, batch, rng)`; the config is
  read here, once (StepSettings)."""
  if config.stage != "gan":
    step_fn = psnr_train_step
  elif config.loss.gan_type == "vanilla":
    step_fn = vanilla_gan_train_step
  else:
    step_fn = gan_train_step
  return functools.partial(step_fn, networks=networks, settings=StepSettings.from_config(config))
