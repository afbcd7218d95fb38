"""PSNR and SSIM the way super-resolution papers report them (BasicSR's convention).

Images are RGB, HWC or NHWC, either uint8 or float in [0, 1]. Before measuring, float images are
clipped to [0, 1] and rounded to uint8 levels, as a saved PNG would be; the luma is then
Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1] (ITU-R BT.601, Y in [16, 235],
not rescaled), and `crop_border` pixels (usually the scale) are dropped at every border.
PSNR comes from one MSE per image with peak 255; SSIM uses an 11x11 Gaussian window (sigma 1.5)
over the 'valid' region only, with C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over channels.

`psnr` / `ssim` compute in NumPy float64, so the figures equal BasicSR's to printing precision;
`rgb_to_y` is the luma NIQE reads. The helpers take an array module `xp` so that a jitted jax.numpy
caller can share them.
"""

import numpy as np

PIXEL_MAX = 255.0
Y_OFFSET = 16.0
Y_FROM_RGB = (65.481, 128.553, 24.966)  # per unit of R, G, B in [0, 1]
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PIXEL_MAX)**2
SSIM_C2 = (0.03 * PIXEL_MAX)**2
# Generator outputs overshoot [0, 1] a little and are clipped; a float image far above that is
# almost surely on a 0-255 scale, which clipping would silently turn white.
FLOAT_IMAGE_LIMIT = 2.0


def _gaussian_taps():
  offsets = np.arange(SSIM_WINDOW_SIZE) - SSIM_WINDOW_SIZE // 2
  taps = np.exp(-offsets**2 / (2 * SSIM_SIGMA**2))
  return tuple(float(t) for t in taps / taps.sum())


SSIM_TAPS = _gaussian_taps()


# ----------------------------------------------------------------------------------------------
# Checks (static shapes and dtypes only, so they also run while tracing under jit).


def _check_image(img, test_y_channel: bool, batched: bool):
  allowed_ndims = (4,) if batched else (3, 4)
  if img.ndim not in allowed_ndims:
    layout = "NHWC" if batched else "HWC or NHWC"
    raise ValueError(f"images must be {layout}, got shape {tuple(img.shape)}")
  if test_y_channel and img.shape[-1] != 3:
    raise ValueError(f"the Y channel needs RGB images (3 channels), got shape {tuple(img.shape)}")
  if np.issubdtype(img.dtype, np.integer) and img.dtype != np.uint8:
    raise ValueError(f"integer images must be uint8, got {img.dtype}")


def _check_pair(img1, img2, crop_border: int, test_y_channel: bool, min_size: int, batched: bool):
  """Raises ValueError naming the shapes when a pair of images cannot be measured."""
  if img1.shape != img2.shape:
    raise ValueError(f"images must have the same shape, got {tuple(img1.shape)} and "
                     f"{tuple(img2.shape)}")
  _check_image(img1, test_y_channel, batched)
  _check_image(img2, test_y_channel, batched)
  if not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
    raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
  height, width = img1.shape[-3], img1.shape[-2]
  cropped = (height - 2 * crop_border, width - 2 * crop_border)
  if min(cropped) < min_size:
    raise ValueError(f"crop_border={crop_border} leaves {cropped[0]}x{cropped[1]} pixels of images "
                     f"of shape {tuple(img1.shape)}; at least {min_size}x{min_size} are needed")


def _check_float_range(img):
  if np.issubdtype(img.dtype, np.floating) and img.size and np.max(img) > FLOAT_IMAGE_LIMIT:
    raise ValueError(f"float images must be in [0, 1], got a maximum of {np.max(img):.4g}; "
                     "pass 0-255 data as uint8")


# ----------------------------------------------------------------------------------------------
# The measurement, written once for NumPy and jax.numpy (`xp`), on NHWC arrays.


def _to_pixel_levels(img, xp, dtype):
  """uint8 or [0, 1] float -> integer levels 0..255 held as `dtype`."""
  if img.dtype == xp.uint8:
    return img.astype(dtype)
  img = img.astype(xp.promote_types(img.dtype, xp.float32))
  return xp.round(xp.clip(img, 0.0, 1.0) * PIXEL_MAX).astype(dtype)


def _luma(levels, offset=Y_OFFSET):
  """Y in [16, 235] from RGB levels in 0..255, keeping a channel axis of 1."""
  red, green, blue = (levels[..., c:c + 1] / PIXEL_MAX for c in range(3))
  return offset + Y_FROM_RGB[0] * red + Y_FROM_RGB[1] * green + Y_FROM_RGB[2] * blue


def _cropped_levels(img, crop_border, xp, dtype):
  levels = _to_pixel_levels(img, xp, dtype)
  height, width = levels.shape[1], levels.shape[2]
  return levels[:, crop_border:height - crop_border, crop_border:width - crop_border, :]


def _psnr(x, y, test_y_channel, xp):
  """x, y: cropped RGB levels. Y is linear, so the Y difference is the luma of the exact level
  difference without the offset, which keeps float32 exact for nearly identical images."""
  difference = x - y
  if test_y_channel:
    difference = _luma(difference, offset=0.0)
  mse = xp.mean(xp.square(difference), axis=(1, 2, 3))
  safe_mse = xp.where(mse == 0, 1.0, mse)
  return xp.where(mse == 0, xp.inf, 10.0 * xp.log10(PIXEL_MAX**2 / safe_mse))


def _valid_gaussian_filter(img):
  """Separable 11x11 Gaussian over the 'valid' region of NHWC `img`, each channel on its own."""
  out_height = img.shape[1] - SSIM_WINDOW_SIZE + 1
  out_width = img.shape[2] - SSIM_WINDOW_SIZE + 1
  rows = sum(tap * img[:, k:k + out_height] for k, tap in enumerate(SSIM_TAPS))
  return sum(tap * rows[:, :, k:k + out_width] for k, tap in enumerate(SSIM_TAPS))


def _ssim(x, y, test_y_channel, xp):
  if test_y_channel:
    x, y = _luma(x), _luma(y)
  # (Co)variances are shift-invariant, so they are computed on pixels minus each channel's mean
  # level: E[x^2] - E[x]^2 of values near 200 loses ~1e-2 in float32, enough to move SSIM by 5e-5
  # on smooth images; centred, float32 stays within ~1e-6 of float64 on natural images.
  level = xp.mean(y, axis=(1, 2), keepdims=True)
  x, y = x - level, y - level
  mu_x, mu_y = _valid_gaussian_filter(x), _valid_gaussian_filter(y)
  var_x = _valid_gaussian_filter(x * x) - mu_x * mu_x
  var_y = _valid_gaussian_filter(y * y) - mu_y * mu_y
  cov_xy = _valid_gaussian_filter(x * y) - mu_x * mu_y
  mu_x, mu_y = mu_x + level, mu_y + level
  ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2) /
              ((mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)))
  # Every channel has as many pixels, so one mean is the average of the per-channel SSIMs.
  return xp.mean(ssim_map, axis=(1, 2, 3))


# ----------------------------------------------------------------------------------------------
# NumPy (float64): one HWC image gives a float, an NHWC batch an array of one value per image.


def _numpy_metric(metric, min_size, img1, img2, crop_border, test_y_channel):
  img1, img2 = np.asarray(img1), np.asarray(img2)
  _check_pair(img1, img2, crop_border, test_y_channel, min_size, batched=False)
  _check_float_range(img1)
  _check_float_range(img2)
  single = img1.ndim == 3
  if single:
    img1, img2 = img1[None], img2[None]
  x = _cropped_levels(img1, crop_border, np, np.float64)
  y = _cropped_levels(img2, crop_border, np, np.float64)
  values = metric(x, y, test_y_channel, np)
  return float(values[0]) if single else values


def psnr(img1, img2, crop_border: int, test_y_channel: bool = True):
  """PSNR in dB (inf for identical images) on Y, or on all RGB channels."""
  return _numpy_metric(_psnr, 1, img1, img2, crop_border, test_y_channel)


def ssim(img1, img2, crop_border: int, test_y_channel: bool = True):
  """SSIM on Y, or averaged over the RGB channels."""
  return _numpy_metric(_ssim, SSIM_WINDOW_SIZE, img1, img2, crop_border, test_y_channel)


def rgb_to_y(img):
  """Y in [16, 235] (float64, shape (..., H, W, 1)) of uint8 or [0, 1] float RGB, as the metrics
  see it: float input is rounded to uint8 levels first."""
  img = np.asarray(img)
  _check_image(img, test_y_channel=True, batched=False)
  _check_float_range(img)
  return _luma(_to_pixel_levels(img, np, np.float64))
