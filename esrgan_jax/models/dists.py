"""DISTS (Ding et al. 2020, "Image Quality Assessment: Unifying Structure and Texture Similarity").

The distance of the `dists-pytorch` package (v0.1) by K. Ding, reproduced in Flax (NHWC):
  D(x, y) = 1 - sum_k sum_c (a_kc * S1_kc + b_kc * S2_kc) / (sum(a) + sum(b))
  S1 = (2 mx my + c1) / (mx^2 + my^2 + c1)        structure: spatial means of one channel
  S2 = (2 cov_xy + c2) / (vx + vy + c2)           texture: spatial (co)variances of one channel
with c1 = c2 = 1e-6, over six feature maps: the [0, 1] input itself and the VGG16 taps relu1_2,
relu2_2, relu3_3, relu4_3, relu5_3 (3 + 64 + 128 + 256 + 512 + 512 = 1475 channels). The backbone
sees ImageNet-normalised images, and every max-pool of VGG16 is replaced by an L2 pooling: a
depthwise 3x3 Hann-window blur of x^2 (stride 2, zero padding 1), then sqrt(. + 1e-12). The
learned weights a (alpha) and b (beta) are non-negative. Lower is more similar; D(x, x) = 0.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Stabilisers of the two similarity terms, as the package's forward uses them.
C1 = 1e-6
C2 = 1e-6
# Added under the L2 pooling's square root, as the package's L2pooling does.
L2_POOL_EPSILON = 1e-12
L2_POOL_STRIDE = 2
L2_POOL_PADDING = 1
# VGG16's five blocks: (convs, width). Block k > 1 opens with an L2 pooling.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
# The feature maps D compares: the input's 3 channels, then each block's last ReLU.
CHANNELS = (3,) + tuple(width for _, width in VGG16_BLOCKS)
NUM_CHANNELS = sum(CHANNELS)  # 1475: the length of alpha and of beta
CONV_NAMES = tuple(f"conv{block}_{i}" for block, (convs, _) in enumerate(VGG16_BLOCKS, 1)
                   for i in range(1, convs + 1))
# Below this many pixels per side of the last tap, its variances are zero and its 512 texture
# terms a constant 1: see `min_image_size`.
MIN_LAST_TAP_SIDE = 2


def l2_pool_window() -> np.ndarray:
  """The 3x3 window: the outer product of hanning(5)[1:-1] = (0.5, 1, 0.5), summing to one."""
  taps = np.hanning(5)[1:-1]
  window = np.outer(taps, taps)
  return (window / window.sum()).astype(np.float32)


def l2_pool(x: jax.Array) -> jax.Array:
  """sqrt(depthwise blur of x^2 + eps), stride 2: DISTS's stand-in for a max-pool (NHWC)."""
  channels = x.shape[-1]
  kernel = jnp.tile(jnp.asarray(l2_pool_window())[:, :, None, None], (1, 1, 1, channels))
  pooled = jax.lax.conv_general_dilated(
      jnp.square(x), kernel, window_strides=(L2_POOL_STRIDE,) * 2,
      padding=((L2_POOL_PADDING, L2_POOL_PADDING),) * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
  return jnp.sqrt(pooled + L2_POOL_EPSILON)


def tap_sides(size: int) -> tuple[int, ...]:
  """Side of each VGG16 tap for an input side of `size` (the 3x3 convs keep it)."""
  sides = [size]
  for _ in VGG16_BLOCKS[1:]:
    sides.append((sides[-1] + 2 * L2_POOL_PADDING - 3) // L2_POOL_STRIDE + 1)
  return tuple(sides)


@functools.cache
def min_image_size() -> int:
  """Smallest image side whose every tap has at least 2x2 pixels (17: the last is then 2x2).

  The published module runs on any size, but at 16 pixels or fewer relu5_3 is one pixel: its
  variances vanish and S2 is 1 whatever the images, so a share of the score stops measuring.
  """
  return next(size for size in range(1, 1024) if min(tap_sides(size)) >= MIN_LAST_TAP_SIDE)


class DistsBackbone(nn.Module):
  """VGG16's features with L2 pooling; returns the five block outputs (post-ReLU, NHWC)."""

  @nn.compact
  def __call__(self, x) -> list[jax.Array]:
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    taps = []
    for block, (convs, width) in enumerate(VGG16_BLOCKS, 1):
      if block > 1:
        x = l2_pool(x)
      for i in range(1, convs + 1):
        x = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{block}_{i}")(x))
      taps.append(x)
    return taps


def _weights_init(key, shape):
  """The package's own start before its file is read: N(0.1, 0.01^2)."""
  return 0.1 + 0.01 * jax.random.normal(key, shape)


def _similarities(f0: jax.Array, f1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(S1, S2) per image and channel, from the spatial statistics of two NHWC feature maps."""
  mean0, mean1 = jnp.mean(f0, axis=(1, 2)), jnp.mean(f1, axis=(1, 2))
  var0 = jnp.mean(jnp.square(f0 - mean0[:, None, None]), axis=(1, 2))
  var1 = jnp.mean(jnp.square(f1 - mean1[:, None, None]), axis=(1, 2))
  # E[xy] - E[x]E[y], as the package computes the covariance (not E[(x - mx)(y - my)]).
  covariance = jnp.mean(f0 * f1, axis=(1, 2)) - mean0 * mean1
  structure = (2 * mean0 * mean1 + C1) / (jnp.square(mean0) + jnp.square(mean1) + C1)
  texture = (2 * covariance + C2) / (var0 + var1 + C2)
  return structure, texture


class DISTS(nn.Module):
  """DISTS of two NHWC batches in [0, 1]; returns one float32 value per image pair."""

  @nn.compact
  def __call__(self, x0, x1) -> jax.Array:
    if x0.shape != x1.shape:
      raise ValueError(f"DISTS compares images of one shape, got {x0.shape} and {x1.shape}")
    batch = x0.shape[0]
    x = jnp.concatenate([x0, x1]).astype(jnp.float32)  # one backbone pass for both sides
    features = [x] + DistsBackbone(name="backbone")(x)
    alpha = self.param("alpha", _weights_init, (NUM_CHANNELS,))
    beta = self.param("beta", _weights_init, (NUM_CHANNELS,))
    total = jnp.sum(alpha) + jnp.sum(beta)
    structure, texture = zip(*(_similarities(f[:batch], f[batch:]) for f in features))
    structure = jnp.concatenate(structure, axis=-1)  # (batch, 1475), in alpha's channel order
    texture = jnp.concatenate(texture, axis=-1)
    return 1 - jnp.sum(structure * (alpha / total) + texture * (beta / total), axis=-1)
