"""ESRGAN losses on arrays: pixel, perceptual (pre-ReLU VGG19 features), relativistic GAN,
Real-ESRGAN's plain (non-relativistic) GAN, and LDL's artifact map and loss.

Detach points follow BasicSR's ESRGANModel (docs/design.md); every weight is an argument so
that configs name each one once.
"""

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

CHARBONNIER_EPSILON = 1e-12


def l1_loss(pred, target):
  # |d| written as d * sign(d): jnp.abs has gradient 1 at d == 0, PyTorch's l1_loss has 0 (sign),
  # and exact ties (e.g. clipped or quantised pixels) would otherwise pull pred downwards.
  diff = pred - target
  return jnp.mean(diff * jnp.sign(diff))


def mse_loss(pred, target):
  return jnp.mean(jnp.square(pred - target))


def charbonnier_loss(pred, target, epsilon: float = CHARBONNIER_EPSILON):
  return jnp.mean(jnp.sqrt(jnp.square(pred - target) + epsilon))


PIXEL_CRITERIA: Mapping[str, Callable] = {
    "l1": l1_loss,
    "l2": mse_loss,
    "mse": mse_loss,
    "charbonnier": charbonnier_loss,
}


def pixel_loss(pred, target, criterion: str = "l1"):
  """Mean pixel loss; float32 whatever the compute dtype of `pred`."""
  if criterion not in PIXEL_CRITERIA:
    raise ValueError(f"pixel criterion must be one of {sorted(PIXEL_CRITERIA)}, got {criterion!r}")
  return PIXEL_CRITERIA[criterion](pred.astype(jnp.float32), target.astype(jnp.float32))


def perceptual_loss(pred_features: Mapping[str, jax.Array],
                    target_features: Mapping[str, jax.Array],
                    layer_weights: Mapping[str, float],
                    criterion: str = "l1"):
  """sum_k w_k * criterion(phi_k(pred), phi_k(target)) with the target's features stopped.

  The features are VGG19 activations taken before their ReLU, as the ESRGAN paper argues.
  """
  if criterion not in ("l1", "l2", "mse"):
    raise ValueError(f"perceptual criterion must be 'l1' or 'l2', got {criterion!r}")
  missing = [name for name in layer_weights
             if name not in pred_features or name not in target_features]
  if missing:
    raise ValueError(f"perceptual_loss: layer_weights names {missing}, which the VGG19 features "
                     f"do not hold (they hold {sorted(pred_features)})")
  total = jnp.zeros((), jnp.float32)
  for name, weight in layer_weights.items():
    target = jax.lax.stop_gradient(target_features[name])
    total = total + weight * pixel_loss(pred_features[name], target, criterion)
  return total


def _bce_with_logits(logits, label: float):
  logits = logits.astype(jnp.float32)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


def discriminator_ragan_loss(real_logits, fake_logits):
  """Relativistic average D loss, returned as its (real, fake) halves; D's loss is their sum.

  real: 0.5 * BCE(C(xr) - E[C(xf)], 1); fake: 0.5 * BCE(C(xf) - E[C(xr)], 0). In each term the
  other branch's mean is stopped, and `fake_logits` must come from a stopped generator output.
  """
  fake_mean = jax.lax.stop_gradient(jnp.mean(fake_logits))
  real_mean = jax.lax.stop_gradient(jnp.mean(real_logits))
  loss_real = 0.5 * _bce_with_logits(real_logits - fake_mean, 1.0)
  loss_fake = 0.5 * _bce_with_logits(fake_logits - real_mean, 0.0)
  return loss_real, loss_fake


def generator_ragan_loss(real_logits, fake_logits):
  """Relativistic average G loss: both terms, with C(xr) stopped (unweighted).

  (BCE(C(xr) - E[C(xf)], 0) + BCE(C(xf) - E[C(xr)], 1)) / 2; the generator learns from the real
  term through E[C(xf)], which is the paper's point against the standard GAN loss.
  """
  real_logits = jax.lax.stop_gradient(real_logits)
  loss_real = _bce_with_logits(real_logits - jnp.mean(fake_logits), 0.0)
  loss_fake = _bce_with_logits(fake_logits - jnp.mean(real_logits), 1.0)
  return (loss_real + loss_fake) / 2


GAN_TYPES = ("ragan", "vanilla")


def generator_gan_loss(fake_logits):
  """Plain GAN G loss, BasicSR's GANLoss('vanilla')(C(G(x)), True): BCE(C(G(x)), 1), unweighted."""
  return _bce_with_logits(fake_logits, 1.0)


def discriminator_gan_loss(real_logits, fake_logits):
  """Plain GAN D loss as its (real, fake) terms, BCE(C(xr), 1) and BCE(C(xf), 0); D's loss is
  their sum (BasicSR's GANLoss weights only the generator's term). `fake_logits` must come from
  a stopped generator output."""
  return _bce_with_logits(real_logits, 1.0), _bce_with_logits(fake_logits, 0.0)


# LDL: Liang, Zeng and Zhang, "Details or Artifacts" (CVPR 2022), as csjliang/LDL computes it
# (basicsr/losses/LDL_loss.py, get_refined_artifact_map, with ksize 7). NHWC throughout.
LDL_KSIZE = 7


def _abs(x):
  # x * sign(x): gradient 0 at x == 0, as torch.abs has (jnp.abs has 1 there; see l1_loss).
  return x * jnp.sign(x)


def _window_sum(padded, ksize: int):
  """Sum over every ksize x ksize window of NHWC `padded` (valid windows only)."""
  height, width = padded.shape[1] - ksize + 1, padded.shape[2] - ksize + 1
  rows = sum(padded[:, i:i + height] for i in range(ksize))
  return sum(rows[:, :, j:j + width] for j in range(ksize))


def local_variance(residual, ksize: int = LDL_KSIZE):
  """Unbiased variance of `residual` (N, H, W, 1) in the ksize x ksize window around each pixel,
  with reflect padding of (ksize - 1) / 2: LDL's pixel-level weight."""
  if ksize < 1 or ksize % 2 == 0:
    raise ValueError(f"local_variance: ksize must be a positive odd number, got {ksize}")
  pad = (ksize - 1) // 2
  # The variance does not move with a shift; taking the image's mean out first keeps the
  # cancellation of the one-pass formula (sum x^2 - (sum x)^2 / n) small in float32.
  centred = residual - jax.lax.stop_gradient(jnp.mean(residual, axis=(1, 2, 3), keepdims=True))
  padded = jnp.pad(centred, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  count = ksize * ksize
  total = _window_sum(padded, ksize)
  return (_window_sum(padded * padded, ksize) - total * total / count) / (count - 1)


def artifact_map(gt, output, ema_output, ksize: int = LDL_KSIZE):
  """LDL's refined artifact map, (N, H, W, 1) float32, of NHWC images.

  Residuals summed over channels, r = sum_c |gt - x|; map = var(r_output)^(1/5) (unbiased, over
  each image) * local_variance(r_output), and 0 where r_output < r_ema. The map keeps its
  gradient path through `output`, as the published code's does; `ema_output` is stopped.
  """
  gt = gt.astype(jnp.float32)
  output = output.astype(jnp.float32)
  ema_output = jax.lax.stop_gradient(ema_output.astype(jnp.float32))
  r_output = jnp.sum(_abs(gt - output), axis=-1, keepdims=True)
  r_ema = jnp.sum(_abs(gt - ema_output), axis=-1, keepdims=True)
  patch_weight = jnp.var(r_output, axis=(1, 2, 3), ddof=1, keepdims=True) ** (1 / 5)
  weight = patch_weight * local_variance(r_output, ksize)
  return jnp.where(r_output < r_ema, 0.0, weight)


def ldl_loss(gt, output, ema_output, ksize: int = LDL_KSIZE):
  """L1(map * output, map * gt) with map = artifact_map(gt, output, ema_output), unweighted."""
  weight = artifact_map(gt, output, ema_output, ksize)
  return l1_loss(weight * output.astype(jnp.float32), weight * gt.astype(jnp.float32))
