"""Per-sample 2D filtering with BasicSR's reflect padding, and unsharp masking (USM).

filter2d is correlation (no kernel flip, like torch's conv2d) after padding by k // 2 with
reflection that does not repeat the edge pixel (numpy/torch 'reflect'). With `valid_hw`, each
image is the top-left valid_h x valid_w part of a larger canvas (how the pipeline keeps one shape
for every random resize): reflection then happens at that part's edges, the result equals
filtering the cropped image, and the canvas outside it is zero.

Neither filter is a convolution op: XLA:CPU runs a depthwise (one kernel per sample and channel)
or single-channel convolution at about 1 GFLOP/s, so the blurs took 12 of the 20 CPU seconds of a
batch (`python -m benchmarks.degradations stages`). filter2d multiplies FFTs (a 21x21 kernel is
441 taps a pixel; the FFTs cost a few dozen flops a pixel in library code), and USM's separable
51-tap Gaussian is two matrix products with the reflection folded into the matrix (what
resampling.py does for resizes): both some 25x faster on CPU, and what GPUs and TPUs run best.
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


def fft_length(n: int) -> int:
  """The smallest 5-smooth length >= n (2^a 3^b 5^c): a prime factor such as 31 in a 620-pixel
  canvas would make its FFT several times slower."""
  while True:
    m = n
    for p in (2, 3, 5):
      while m % p == 0:
        m //= p
    if m == 1:
      return n
    n += 1


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
  if kernels.shape[0] == 1:
    kernels = jnp.broadcast_to(kernels, (n, k, k))
  # Planes (sample x channel) first, one batch dimension: XLA's FFT transforms the innermost
  # dimensions, and XLA:CPU's FFT refuses some layouts that a rank-4 operand with a local batch
  # of one gets under a sharded jit (a RET_CHECK in fft_thunk.cc), which rank 3 avoids.
  padded = _reflect_pad(images, k // 2, valid_hw)
  planes = jnp.moveaxis(padded, 3, 1).reshape(n * c, h + k - 1, w + k - 1)
  # Circular correlation of the padded image: outputs 0 .. H-1 read inputs up to H + k - 2 only,
  # so no wrapped sample reaches them, at any FFT length >= H + k - 1.
  size = (fft_length(h + k - 1), fft_length(w + k - 1))
  spectrum = jnp.fft.rfft2(planes, s=size)
  kernel_spectrum = jnp.repeat(jnp.fft.rfft2(kernels, s=size), c, axis=0)
  # Correlation, not convolution: the kernel's spectrum conjugated.
  out = jnp.fft.irfft2(spectrum * jnp.conj(kernel_spectrum), s=size)
  out = jnp.moveaxis(out[:, :h, :w].reshape(n, c, h, w), 1, 3)
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


@functools.cache
def blur_matrix(size: int, kernel_size: int) -> np.ndarray:
  """(size, size) matrix M with M @ x = correlation of x (length size) with gaussian_kernel_1d
  after numpy-'reflect' padding by kernel_size // 2: each tap added at its reflected column."""
  kernel = gaussian_kernel_1d(kernel_size).astype(np.float64)
  # The column each padded position reads: numpy's own 'reflect', folding as often as needed.
  reflected = np.pad(np.arange(size), kernel_size // 2, mode="reflect")
  source = reflected[np.arange(size)[:, None] + np.arange(kernel_size)[None]]
  matrix = np.zeros((size, size))
  np.add.at(matrix, (np.repeat(np.arange(size), kernel_size), source.ravel()),
            np.tile(kernel, size))
  return matrix.astype(np.float32)


def _separable_blur(images, kernel_size: int):
  """The outer-product Gaussian as matrix products over rows, then columns."""
  _, h, w, _ = images.shape
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", blur_matrix(h, kernel_size), images, precision=hi)
  return jnp.einsum("pw,nowc->nopc", blur_matrix(w, kernel_size), x, precision=hi)


def usm_sharp(images, weight: float = 0.5, radius: int = 50, threshold: float = 10):
  """BasicSR's USMSharp: blend towards img + weight (img - blur) where |img - blur| > threshold/255.

  The Gaussian is cv2's of size radius (+1 if even); the mask is blurred with it for a soft blend;
  only the sharpened image is clipped to [0, 1], not the blend. The blurs cost O(H W (H + W)):
  matrix products, fastest at training sizes (GT 400 here); a 2000-pixel photo takes about what
  a 51-tap convolution would.
  """
  size = radius + 1 if radius % 2 == 0 else radius
  blur = _separable_blur(images, size)
  residual = images - blur
  mask = (jnp.abs(residual) * 255 > threshold).astype(jnp.float32)
  soft_mask = _separable_blur(mask, size)
  sharp = jnp.clip(images + weight * residual, 0, 1)
  return soft_mask * sharp + (1 - soft_mask) * images
