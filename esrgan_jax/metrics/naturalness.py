"""NIQE (Mittal, Soundararajan and Bovik 2013), as MATLAB's `niqe` and BasicSR's `calculate_niqe`.

A no-reference score: the distance between a multivariate Gaussian (MVG) fitted to natural-scene
statistics of the image and one fitted to pristine photographs. Lower is better.

The steps, on an RGB uint8 HxWx3 image:
- Y = 16 + 65.481 R + 128.553 G + 24.966 B on [0, 1] RGB (BT.601, [16, 235], as PSNR's Y), in
  float; `crop_border` pixels dropped at every side; then rounded to integers (half to even);
- the image is cut to whole 96x96 blocks (no overlap);
- MSCN coefficients (I - mu) / (sigma + 1), mu and sigma^2 the local mean and variance under the
  pristine model's 7x7 Gaussian window, the image extended by its edge pixels ('nearest');
- per block, 18 features: an asymmetric generalised Gaussian (AGGD) fit of the MSCN values (shape,
  mean of the two scales) and of the products with the 4 neighbours (0, 1), (1, 0), (1, 1),
  (1, -1) (shifts wrap around inside the block: shape, mean, left and right scale). The shape is
  the nearest of 0.2, 0.201, ..., 10 by the moment ratio; a block without negative or positive
  values gets NaN scales and shape 0.2, as the reference's argmin over NaN does;
- the same at half scale (MATLAB's antialiased bicubic x0.5, 48x48 blocks), 36 features a block;
- the MVG of the blocks: NaN-ignoring mean, covariance of the NaN-free rows; the score is
  sqrt((mu_p - mu_d) pinv((C_p + C_d) / 2) (mu_p - mu_d)^T).

The block features run jitted (on the accelerator when there is one) on batches of fixed size: each
block travels with the 3-pixel edge of its neighbourhood the window needs, so one compilation per
block size serves images of every shape. They run in float64 (jax.enable_x64, scoped to those
calls), as MATLAB does: in float32 the AGGD shape of near-flat blocks of blurred or JPEG'd images
can land on the neighbouring grid point, which moved NIQE by up to 1e-2. A TPU has no native
float64, so there they run on the host CPU. The host does the rest in float64 too: the luma, the
bicubic x0.5 (data/bicubic.py) and the MVG.

The pristine model is a file: BasicSR's `niqe_pris_params.npz` (mu_pris_param, cov_pris_param,
gaussian_window) or MATLAB's `modelparameters.mat` (mu_prisparam, cov_prisparam; MATLAB builds the
window itself, fspecial('gaussian', 7, 7/6)). `fit_niqe_params` makes one from clean images as
MATLAB's fitniqe does: blocks of each image whose mean sigma exceeds 0.75 of the image's sharpest
block are pooled, and their MVG is the model.
"""

import functools
import os
import zipfile
from typing import Iterable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import scipy.io
import scipy.special

from esrgan_jax import cli
from esrgan_jax.data import bicubic
from esrgan_jax.metrics import psnr_ssim

BLOCK_SIZE = 96
NUM_FEATURES = 36  # 18 a block at each of the two scales.
SHARPNESS_THRESHOLD = 0.75
WINDOW_SIZE = 7
WINDOW_SIGMA = 7 / 6
# BasicSR's shape grid, built the same way so the grid points are the same floats.
AGGD_SHAPES = np.arange(0.2, 10.001, 0.001)
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
# Blocks go to the device in batches of this many, so the batch shape never changes.
BATCH_BLOCKS = 32


class NiqeParams(NamedTuple):
  """A pristine model: mean (36,), covariance (36, 36), MSCN window (k, k), all float64."""
  mu: np.ndarray
  cov: np.ndarray
  window: np.ndarray


class NiqeParamsError(cli.UserError, ValueError):
  """A pristine-model file that cannot be read, written or used; the message names the file."""


def matlab_gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
  """MATLAB's fspecial('gaussian', size, sigma)."""
  offsets = np.arange(size) - (size - 1) / 2
  window = np.exp(-(offsets[:, None]**2 + offsets[None, :]**2) / (2 * sigma**2))
  window[window < np.finfo(np.float64).eps * window.max()] = 0
  return window / window.sum()


# ----------------------------------------------------------------------------------------------
# Pristine model files.


def _checked_params(mu, cov, window, source: str) -> NiqeParams:
  mu = np.asarray(mu, np.float64).reshape(-1)
  cov = np.asarray(cov, np.float64)
  window = np.asarray(window, np.float64)
  if mu.shape != (NUM_FEATURES,) or cov.shape != (NUM_FEATURES, NUM_FEATURES):
    raise NiqeParamsError(f"{source}: a NIQE model has a mean of {NUM_FEATURES} values and a "
                          f"{NUM_FEATURES}x{NUM_FEATURES} covariance, got {mu.size} values and "
                          f"{'x'.join(map(str, cov.shape))}")
  if window.ndim != 2 or window.shape[0] != window.shape[1] or window.shape[0] % 2 == 0:
    raise NiqeParamsError(f"{source}: gaussian_window must be a square window of odd size, got "
                          f"shape {window.shape}")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov)) and np.all(np.isfinite(window))):
    raise NiqeParamsError(f"{source}: the NIQE model holds NaN or infinite values")
  return NiqeParams(mu, cov, window)


def _variable(contents, name: str, source: str):
  if name not in contents:
    raise NiqeParamsError(f"{source}: no variable '{name}' (variables: "
                          f"{', '.join(sorted(k for k in contents if not k.startswith('__')))})")
  return contents[name]


def load_niqe_params(path: Union[str, os.PathLike]) -> NiqeParams:
  """The pristine model in BasicSR's .npz or MATLAB's .mat; NiqeParamsError naming the file if
  not."""
  path = os.fspath(path)
  extension = os.path.splitext(path)[1].lower()
  if extension not in (".npz", ".mat"):
    raise NiqeParamsError(f"{path}: a NIQE model is a .npz (BasicSR) or .mat (MATLAB) file")
  if not os.path.isfile(path):
    raise NiqeParamsError(f"{path}: NIQE model file does not exist")
  if extension == ".npz" and not zipfile.is_zipfile(path):
    # Else numpy takes it for a pickle and suggests allow_pickle, which would run its bytes.
    raise NiqeParamsError(f"{path}: not a readable .npz file (not a zip archive: damaged, or "
                          "not written by numpy.savez)")
  try:
    if extension == ".npz":
      with np.load(path) as contents:
        contents = dict(contents)
      names = ("mu_pris_param", "cov_pris_param")
    else:
      contents = scipy.io.loadmat(path)
      names = ("mu_prisparam", "cov_prisparam")
  except ValueError as e:
    raise NiqeParamsError(f"{path}: not a readable {extension} file ({e})") from None
  except Exception as e:  # zipfile, pickle and scipy raise many types on corrupt files.
    raise NiqeParamsError(
        f"{path}: not a readable {extension} file ({type(e).__name__}: {e})") from None
  window = contents.get("gaussian_window")
  if window is None:
    window = matlab_gaussian_window()
  return _checked_params(_variable(contents, names[0], path), _variable(contents, names[1], path),
                         window, path)


def save_niqe_params(path: Union[str, os.PathLike], params: NiqeParams) -> None:
  """Writes `params` as BasicSR's .npz or MATLAB's .mat, chosen by the extension of `path`.

  The .mat file also holds the window, which MATLAB ignores and `load_niqe_params` reads.
  """
  path = os.fspath(path)
  params = _checked_params(*params, source=path)
  extension = os.path.splitext(path)[1].lower()
  if extension == ".npz":
    with open(path, "wb") as f:
      np.savez(f, mu_pris_param=params.mu[None], cov_pris_param=params.cov,
               gaussian_window=params.window)
  elif extension == ".mat":
    scipy.io.savemat(path, {"mu_prisparam": params.mu[None], "cov_prisparam": params.cov,
                            "gaussian_window": params.window})
  else:
    raise NiqeParamsError(f"{path}: a NIQE model is saved as .npz (BasicSR) or .mat (MATLAB)")


# ----------------------------------------------------------------------------------------------
# Block features, jitted.


@functools.cache
def _aggd_tables():
  """Per grid shape a: the moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) matched against the
  data, the scale factor sqrt(Gamma(1/a) / Gamma(3/a)) and the mean factor Gamma(2/a) / Gamma(1/a)."""
  g1, g2, g3 = (scipy.special.gamma(k / AGGD_SHAPES) for k in (1, 2, 3))
  return (AGGD_SHAPES, g2**2 / (g1 * g3), np.sqrt(g1 / g3), g2 / g1)


def _aggd_fit(x, tables):
  """(shape, left scale, right scale, mean factor) of each row of x (N, P)."""
  shapes, ratios, scale_factors, mean_factors = tables
  negative, positive = x < 0, x > 0
  # 0 / 0 gives NaN for a side without values, as the reference's mean of nothing does.
  left_std = jnp.sqrt(jnp.sum(jnp.where(negative, x * x, 0), axis=1) / jnp.sum(negative, axis=1))
  right_std = jnp.sqrt(jnp.sum(jnp.where(positive, x * x, 0), axis=1) / jnp.sum(positive, axis=1))
  gamma_hat = left_std / right_std
  r_hat = jnp.mean(jnp.abs(x), axis=1)**2 / jnp.mean(x * x, axis=1)
  r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1)**2
  index = jnp.argmin(jnp.square(ratios[None, :] - r_hat_norm[:, None]), axis=1)
  index = jnp.where(jnp.isnan(r_hat_norm), 0, index)
  factor = scale_factors[index]
  return shapes[index], left_std * factor, right_std * factor, mean_factors[index]


@jax.jit
def _block_features(tiles, window, window_deficit, tables):
  """Features (N, 18) and mean sigma (N,) of the blocks at the centres of tiles (N, b+k-1, b+k-1).

  window_deficit = 1 - sum(window), computed in float64 on the host.
  """
  size = window.shape[0]
  block = tiles.shape[1] - size + 1
  # scipy.ndimage.convolve flips the window; a correlation with the flipped window is the same.
  flipped = window[::-1, ::-1]

  def window_sum(term):
    """sum over taps (i, j) of flipped[i, j] * term(tiles shifted by (i, j)); a loop, not 49
    unrolled terms, keeps the compilation short."""
    def add(tap, total):
      i, j = tap // size, tap % size
      shifted = jax.lax.dynamic_slice(tiles, (0, i, j), (tiles.shape[0], block, block))
      return total + flipped[i, j] * term(shifted)
    return jax.lax.fori_loop(0, size * size, add, jnp.zeros(tiles.shape[:1] + (block, block)))

  centre = size // 2
  level = tiles[:, centre:centre + block, centre:centre + block]
  # Everything from differences of levels, never from levels near 200: I - mu is exactly 0 where
  # the neighbourhood is flat (the sign of a rounding residue there would decide which side of
  # the AGGD a pixel counts for), and nothing is lost to cancellation.
  # I - mu = sum_k w_k (I - I_k) + I (1 - sum w).
  deviation = window_sum(lambda shifted: level - shifted) + level * window_deficit
  # Integer levels under a symmetric window: where the exact deviation is 0 (a flat or linear
  # neighbourhood), rounding leaves a residue of ~1e-17 whose sign would still pick an AGGD side.
  # Exact non-zero deviations are far above 1e-9 (the smallest tap is 1.5e-4 of a level).
  deviation = jnp.where(jnp.abs(deviation) < 1e-9 * jnp.maximum(jnp.abs(level), 1), 0.0,
                        deviation)
  # E_w[I^2] - mu^2 = sum_k w_k (I_k - mu)^2 + mu^2 (1 - sum w), with I_k - mu = I_k - I + (I - mu).
  variance = window_sum(lambda shifted: jnp.square(shifted - level + deviation))
  mu = level - deviation
  sigma = jnp.sqrt(jnp.abs(variance + jnp.square(mu) * window_deficit))
  mscn = deviation / (sigma + 1)

  flat = mscn.reshape(mscn.shape[0], -1)
  shape, left, right, _ = _aggd_fit(flat, tables)
  features = [shape, (left + right) / 2]
  for shift in SHIFTS:
    product = mscn * jnp.roll(mscn, shift, axis=(1, 2))
    shape, left, right, mean_factor = _aggd_fit(product.reshape(flat.shape), tables)
    features += [shape, (right - left) * mean_factor, left, right]
  return jnp.stack(features, axis=1), jnp.mean(sigma, axis=(1, 2))


@functools.cache
def _float64_device():
  """The first device, unless it is a TPU, which has no native float64: then the host CPU."""
  device = jax.local_devices()[0]
  return jax.local_devices(backend="cpu")[0] if device.platform == "tpu" else device


def _features_at_scale(image: np.ndarray, block: int, window: np.ndarray):
  """Features (blocks, 18) and sharpness (blocks,) of an image made of whole blocks, row-major."""
  halo = window.shape[0] // 2
  padded = np.pad(image, halo, mode="edge").astype(np.float64)
  tile = block + 2 * halo
  tiles = np.lib.stride_tricks.sliding_window_view(padded, (tile, tile))[::block, ::block]
  tiles = tiles.reshape(-1, tile, tile)
  count = len(tiles)
  batches = -(-count // BATCH_BLOCKS)
  tiles = np.concatenate([tiles, np.zeros((batches * BATCH_BLOCKS - count, tile, tile),
                                          np.float64)])
  # A window normalised to float64 precision counts as summing to 1, so flat areas stay exactly 0.
  deficit = 1.0 - window.sum()
  deficit = np.float64(0.0 if abs(deficit) < 1e-9 else deficit)
  # Float64 on the device, scoped to these calls: blurred or compressed images have near-flat
  # blocks whose moment ratio lies within float32 rounding of the midpoint of two shape grid
  # points, and MATLAB (float64) picks one of them.
  device = _float64_device()
  with jax.enable_x64(True):
    put = lambda x: jax.device_put(np.asarray(x, np.float64), device)
    tables = tuple(put(t) for t in _aggd_tables())
    window64, deficit = put(window), put(deficit)
    outputs = [_block_features(put(tiles[k:k + BATCH_BLOCKS]), window64, deficit, tables)
               for k in range(0, len(tiles), BATCH_BLOCKS)]
    outputs = [(np.asarray(f), np.asarray(s)) for f, s in outputs]
  features = np.concatenate([np.asarray(f, np.float64) for f, _ in outputs])[:count]
  sharpness = np.concatenate([np.asarray(s, np.float64) for _, s in outputs])[:count]
  return features, sharpness


def _luma_levels(image, crop_border: int, source: str) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"{source}: NIQE takes an RGB uint8 HxWx3 image, got {image.dtype} of shape "
                     f"{image.shape}")
  if not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
    raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
  y = psnr_ssim.rgb_to_y(image)[..., 0]
  height, width = y.shape
  y = y[crop_border:height - crop_border, crop_border:width - crop_border]
  return np.round(y)


def _block_statistics(y: np.ndarray, window: np.ndarray, source: str):
  """36 features and the scale-1 sharpness of every whole 96x96 block of the luma y."""
  rows, cols = y.shape[0] // BLOCK_SIZE, y.shape[1] // BLOCK_SIZE
  if rows * cols < 2:
    raise ValueError(f"{source}: NIQE needs at least two {BLOCK_SIZE}x{BLOCK_SIZE} blocks, the "
                     f"image has {y.shape[0]}x{y.shape[1]} pixels (after any crop)")
  y = y[:rows * BLOCK_SIZE, :cols * BLOCK_SIZE]
  full, sharpness = _features_at_scale(y, BLOCK_SIZE, window)
  # BasicSR resizes I / 255 and scales back; in float64 that is the same image.
  half = bicubic.imresize(y / 255.0, scale=0.5) * 255.0
  halved, _ = _features_at_scale(half, BLOCK_SIZE // 2, window)
  return np.concatenate([full, halved], axis=1), sharpness


def _gaussian_fit(features: np.ndarray, source: str):
  complete = features[~np.isnan(features).any(axis=1)]
  if len(complete) < 2:
    raise ValueError(f"{source}: fewer than two blocks with defined NIQE features (flat image?)")
  return np.nanmean(features, axis=0), np.cov(complete, rowvar=False)


def niqe(image, pristine: NiqeParams, crop_border: int = 0) -> float:
  """NIQE of an RGB uint8 HxWx3 image against a pristine model; lower is better."""
  y = _luma_levels(image, crop_border, "image")
  features, _ = _block_statistics(y, pristine.window, "image")
  mu, cov = _gaussian_fit(features, "image")
  difference = pristine.mu - mu
  inverse = np.linalg.pinv((pristine.cov + cov) / 2)
  return float(np.sqrt(difference @ inverse @ difference))


def fit_niqe_params(images: Union[str, os.PathLike, Iterable[np.ndarray]],
                    sharpness_threshold: float = SHARPNESS_THRESHOLD,
                    window: np.ndarray = None) -> NiqeParams:
  """A pristine model from clean photographs (a folder, or RGB uint8 HxWx3 arrays).

  Per image, the blocks whose mean sigma (at scale 1) exceeds `sharpness_threshold` times the
  largest block's are kept, as in MATLAB's fitniqe; the features of all kept blocks give the MVG.
  The luma is the one `niqe` measures (rounded BT.601 Y, no crop).
  """
  window = matlab_gaussian_window() if window is None else np.asarray(window, np.float64)
  if isinstance(images, (str, os.PathLike)):
    from esrgan_jax.data import images as image_io  # Only the folder form reads files.
    images = ((path, image_io.read_image(path)) for path in image_io.list_images(images))
  else:
    images = ((f"image {k}", image) for k, image in enumerate(images))
  kept = []
  for source, image in images:
    features, sharpness = _block_statistics(_luma_levels(image, 0, source), window, source)
    kept.append(features[sharpness > sharpness_threshold * sharpness.max()])
  if not kept:
    raise ValueError("fit_niqe_params: no images given")
  mu, cov = _gaussian_fit(np.concatenate(kept), "fit_niqe_params")
  return _checked_params(mu, cov, window, "fit_niqe_params")
