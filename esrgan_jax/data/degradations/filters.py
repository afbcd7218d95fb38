"""Per-sample 2D filtering with BasicSR's reflect padding, and unsharp masking (USM).

filter2d is correlation (no kernel flip, like torch's conv2d) after padding by k // 2 with
reflection that does not repeat the edge pixel (numpy/torch 'reflect'). With `valid_hw`, each
image is the top-left valid_h x valid_w part of a larger canvas (how the pipeline keeps one shape
for every random resize): reflection then happens at that part's edges, the result equals
filtering the cropped image, and the canvas outside it is zero.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _reflect_index(index, size):
  """numpy 'reflect' of integer positions into [0, size); folds as often as needed."""
  period = jnp.maximum(2 * (size - 1), 1)
  m = jnp.mod(index, period)
  return jnp.where(size <= 1, 0, jnp.where(m < size, m, period - m))


def _reflect_pad(images, pad, valid_hw=None):
  """(N, H + 2 pad, W + 2 pad, C), reflecting at each sample's valid edges (default H, W)."""
  n, h, w, _ = images.shape
  if valid_hw is None:
    return jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  vh, vw = valid_hw[0].astype(jnp.int32), valid_hw[1].astype(jnp.int32)
  rows = _reflect_index(jnp.arange(-pad, h + pad)[None] , vh[:, None])  # (N, H + 2 pad)
  cols = _reflect_index(jnp.arange(-pad, w + pad)[None], vw[:, None])
  images = jnp.take_along_axis(images, rows[:, :, None, None], axis=1)
  return jnp.take_along_axis(images, cols[:, None, :, None], axis=2)


def valid_mask(shape_hw, valid_hw):
  """(N, H, W, 1) float mask of each sample's top-left valid region."""
  h, w = shape_hw
  rows = jnp.arange(h)[None] < valid_hw[0][:, None]
  cols = jnp.arange(w)[None] < valid_hw[1][:, None]
  return (rows[:, :, None] & cols[:, None, :])[..., None].astype(jnp.float32)


def filter2d(images, kernels, valid_hw=None):
  """Correlates each image (N, H, W, C) with its kernel (N, k, k) or one kernel (k, k)/(1, k, k).

  valid_hw: optional pair of (N,) int arrays, see the module docstring.
  """
  kernels = jnp.asarray(kernels, jnp.float32)
  if kernels.ndim == 2:
    kernels = kernels[None]
  k = kernels.shape[-1]
  if k % 2 != 1 or kernels.shape[-2] != k:
    raise ValueError(f"filter2d needs square kernels of odd size, got {kernels.shape}")
  n, h, w, c = images.shape
  padded = _reflect_pad(images, k // 2, valid_hw)
  if kernels.shape[0] == 1:
    kernels = jnp.broadcast_to(kernels, (n, k, k))
  # Samples become channel groups of one depthwise convolution: one kernel per (sample, channel).
  x = jnp.transpose(padded, (1, 2, 0, 3)).reshape(1, h + k - 1, w + k - 1, n * c)
  rhs = jnp.repeat(kernels, c, axis=0).transpose(1, 2, 0)[:, :, None, :]  # (k, k, 1, N C)
  out = jax.lax.conv_general_dilated(
      x, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=n * c, precision=jax.lax.Precision.HIGHEST)
  out = out.reshape(h, w, n, c).transpose(2, 0, 1, 3)
  if valid_hw is not None:
    out = out * valid_mask((h, w), valid_hw)
  return out


@functools.cache
def gaussian_kernel_1d(size: int) -> np.ndarray:
  """cv2.getGaussianKernel(size, 0): sigma = 0.3 ((size - 1) / 2 - 1) + 0.8, normalised."""
  sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  kernel = np.exp(-x**2 / (2 * sigma**2))
  return (kernel / kernel.sum()).astype(np.float32)


def _separable_blur(images, kernel_1d):
  """The outer-product kernel applied as two 1D passes (k + k taps instead of k * k)."""
  k = kernel_1d.shape[0]
  pad = k // 2
  n, h, w, c = images.shape
  x = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  x = x.transpose(0, 3, 1, 2).reshape(n * c, h + 2 * pad, w + 2 * pad, 1)
  kern = jnp.asarray(kernel_1d)
  dn = ("NHWC", "HWIO", "NHWC")
  hi = jax.lax.Precision.HIGHEST
  x = jax.lax.conv_general_dilated(x, kern[:, None, None, None], (1, 1), "VALID",
                                   dimension_numbers=dn, precision=hi)
  x = jax.lax.conv_general_dilated(x, kern[None, :, None, None], (1, 1), "VALID",
                                   dimension_numbers=dn, precision=hi)
  return x.reshape(n, c, h, w).transpose(0, 2, 3, 1)


def usm_sharp(images, weight: float = 0.5, radius: int = 50, threshold: float = 10):
  """BasicSR's USMSharp: blend towards img + weight (img - blur) where |img - blur| > threshold/255.

  The Gaussian is cv2's of size radius (+1 if even); the mask is blurred with it for a soft blend;
  only the sharpened image is clipped to [0, 1], not the blend.
  """
  size = radius + 1 if radius % 2 == 0 else radius
  kernel = gaussian_kernel_1d(size)
  blur = _separable_blur(images, kernel)
  residual = images - blur
  mask = (jnp.abs(residual) * 255 > threshold).astype(jnp.float32)
  soft_mask = _separable_blur(mask, kernel)
  sharp = jnp.clip(images + weight * residual, 0, 1)
  return soft_mask * sharp + (1 - soft_mask) * images
