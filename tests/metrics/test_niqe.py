"""NIQE against a NumPy reference written here from the algorithm (MATLAB's niqe, BasicSR's
calculate_niqe), on photographs skimage ships and on degraded copies; pristine model files.

The reference is float64 with loops and explicit index arithmetic: scipy's convolve for the local
statistics, the wrap-around neighbour shifts by modular indices, the AGGD shape by scanning the
grid. The pristine models are fitted here from bundled photos, so nothing is downloaded.
"""

import io
import math

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import scipy.special
import skimage.data
from PIL import Image

from esrgan_jax import metrics
from esrgan_jax.data import bicubic

GRID = np.arange(0.2, 10.001, 0.001)
GAMMA = scipy.special.gamma
RATIOS = GAMMA(2 / GRID)**2 / (GAMMA(1 / GRID) * GAMMA(3 / GRID))


def reference_aggd(values):
  values = values.ravel()
  negative, positive = values[values < 0], values[values > 0]
  left = math.sqrt(np.mean(negative**2)) if negative.size else math.nan
  right = math.sqrt(np.mean(positive**2)) if positive.size else math.nan
  mean_square = np.mean(values**2)
  r_hat = np.mean(np.abs(values))**2 / mean_square if mean_square else math.nan
  g = left / right
  r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1)**2
  # The grid point whose ratio is nearest; the first one when the data give NaN.
  alpha = GRID[0] if math.isnan(r_norm) else GRID[int(np.argmin(np.abs(RATIOS - r_norm)))]
  factor = math.sqrt(GAMMA(1 / alpha) / GAMMA(3 / alpha))
  return alpha, left * factor, right * factor


def reference_block_features(block):
  alpha, left, right = reference_aggd(block)
  features = [alpha, (left + right) / 2]
  rows, cols = np.indices(block.shape)
  for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
    neighbour = block[(rows - dy) % block.shape[0], (cols - dx) % block.shape[1]]
    alpha, left, right = reference_aggd(block * neighbour)
    features += [alpha, (right - left) * GAMMA(2 / alpha) / GAMMA(1 / alpha), left, right]
  return features


def reference_features(rgb, window, crop_border=0):
  rgb = rgb.astype(np.float64) / 255
  y = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
  if crop_border:
    y = y[crop_border:-crop_border, crop_border:-crop_border]
  y = np.round(y)
  rows, cols = y.shape[0] // 96, y.shape[1] // 96
  y = y[:rows * 96, :cols * 96]
  per_scale, sharpness = [], None
  for scale in (1, 2):
    mu = scipy.ndimage.convolve(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(scipy.ndimage.convolve(y * y, window, mode="nearest") - mu * mu))
    # Where the 7x7 neighbourhood is flat, y - mu is 0 up to float64 rounding, whose sign would
    # decide which side of the AGGD the pixel counts for; the exact value 0 is taken.
    deviation = np.where(np.abs(y - mu) < 1e-9 * np.maximum(np.abs(y), 1), 0.0, y - mu)
    mscn = deviation / (sigma + 1)
    b = 96 // scale
    blocks = [(slice(i * b, (i + 1) * b), slice(j * b, (j + 1) * b))
              for i in range(rows) for j in range(cols)]
    per_scale.append(np.array([reference_block_features(mscn[s]) for s in blocks]))
    if scale == 1:
      sharpness = np.array([sigma[s].mean() for s in blocks])
    y = bicubic.imresize(y / 255, scale=0.5) * 255
  return np.concatenate(per_scale, axis=1), sharpness


def reference_gaussian(features):
  return (np.nanmean(features, axis=0),
          np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False))


def reference_niqe(rgb, params, crop_border=0):
  mu, cov = reference_gaussian(reference_features(rgb, params.window, crop_border)[0])
  d = params.mu - mu
  return math.sqrt(d @ np.linalg.pinv((params.cov + cov) / 2) @ d)


def reference_fit(images, window, threshold=0.75):
  kept = []
  for image in images:
    features, sharpness = reference_features(image, window)
    kept.append(features[sharpness > threshold * sharpness.max()])
  return reference_gaussian(np.concatenate(kept))


def photos():
  """Crops without saturated flat areas: where I == mu exactly, the reference's own float64
  rounding noise decides the sign of each MSCN value, and with it the AGGD fit."""
  grey = skimage.data.camera()
  return {"astronaut": skimage.data.astronaut()[260:500, 0:288],
          "chelsea": skimage.data.chelsea()[:240, :288],
          "camera": np.stack([grey] * 3, axis=-1)[100:340, 100:388]}


def training_photos():
  return [skimage.data.coffee(), skimage.data.rocket()[:384], skimage.data.astronaut()[200:],
          skimage.data.chelsea()]


def blurred(image):
  return np.round(scipy.ndimage.gaussian_filter(image.astype(np.float64), (2, 2, 0))).astype(
      np.uint8)


def noisy(image):
  noise = np.random.default_rng(0).normal(0, 20, image.shape)
  return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def jpeg(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=5)
  return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.fixture(scope="module")
def pristine():
  # Four photos give ~80 blocks, but fitniqe's 0.75 threshold keeps fewer than the 36 a full-rank
  # covariance needs; the pinv of a rank-deficient model magnifies float32 noise, so the model
  # the scores use keeps every block (the published model pools 125 photos).
  return metrics.fit_niqe_params(training_photos(), sharpness_threshold=0.0)


def test_matlab_window_is_fspecial_gaussian_7_by_7_over_6():
  offsets = np.arange(-3, 4)
  expected = np.exp(-np.add.outer(offsets**2, offsets**2) / (2 * (7 / 6)**2))
  np.testing.assert_allclose(metrics.naturalness.matlab_gaussian_window(),
                             expected / expected.sum(), rtol=1e-14)


@pytest.mark.parametrize("threshold", [0.75, 0.0])
def test_fit_matches_the_reference(pristine, threshold):
  fitted = metrics.fit_niqe_params(training_photos(), sharpness_threshold=threshold)
  mu, cov = reference_fit(training_photos(), pristine.window, threshold)
  # Float64 features: every block's AGGD shape is the reference's grid point.
  print(f"threshold {threshold}: largest |mu - reference| {np.max(np.abs(fitted.mu - mu)):.2e}, "
        f"|cov - reference| {np.max(np.abs(fitted.cov - cov)):.2e}")
  np.testing.assert_allclose(fitted.mu, mu, rtol=0, atol=1e-9)
  np.testing.assert_allclose(fitted.cov, cov, rtol=0, atol=1e-9)


# Blur and JPEG leave many near-flat blocks whose AGGD shape sits between two grid points; with
# float32 features some moved to the neighbour and NIQE by up to 1.2e-2. The features are float64.
@pytest.mark.parametrize("degrade", [None, noisy, blurred, jpeg])
def test_niqe_matches_the_reference(pristine, degrade):
  for name, image in photos().items():
    image = degrade(image) if degrade else image
    for crop_border in (0, 4):
      expected = reference_niqe(image, pristine, crop_border)
      got = metrics.niqe(image, pristine, crop_border)
      print(f"{name} {getattr(degrade, '__name__', 'clean')} border {crop_border}: "
            f"|NIQE - reference| = {abs(got - expected):.2e}")
      assert got == pytest.approx(expected, abs=1e-6), name


def test_degraded_photos_rank_worse(pristine):
  for name, image in photos().items():
    clean = metrics.niqe(image, pristine)
    for degrade in (blurred, noisy, jpeg):
      assert metrics.niqe(degrade(image), pristine) > clean, (name, degrade.__name__)


@pytest.mark.parametrize("extension", [".npz", ".mat"])
def test_pristine_model_round_trips(pristine, tmp_path, extension):
  path = tmp_path / f"model{extension}"
  metrics.save_niqe_params(path, pristine)
  loaded = metrics.load_niqe_params(path)
  for saved, read in zip(pristine, loaded):
    np.testing.assert_array_equal(saved, read)
  image = photos()["chelsea"]
  assert metrics.niqe(image, loaded) == metrics.niqe(image, pristine)


def test_files_in_the_published_layouts_load(pristine, tmp_path):
  # BasicSR's file: mean of shape (1, 36) beside the covariance and the window.
  np.savez(tmp_path / "niqe_pris_params.npz", mu_pris_param=pristine.mu[None],
           cov_pris_param=pristine.cov, gaussian_window=pristine.window)
  # MATLAB's file holds no window: MATLAB makes fspecial('gaussian', 7, 7/6) itself.
  scipy.io.savemat(tmp_path / "modelparameters.mat",
                   {"mu_prisparam": pristine.mu[None], "cov_prisparam": pristine.cov})
  for name in ("niqe_pris_params.npz", "modelparameters.mat"):
    loaded = metrics.load_niqe_params(tmp_path / name)
    np.testing.assert_array_equal(loaded.mu, pristine.mu)
    np.testing.assert_array_equal(loaded.cov, pristine.cov)
    np.testing.assert_allclose(loaded.window, pristine.window, rtol=1e-15)


def test_bad_files_and_images_are_named(pristine, tmp_path):
  with pytest.raises(ValueError, match="missing.npz: NIQE model file does not exist"):
    metrics.load_niqe_params(tmp_path / "missing.npz")
  with pytest.raises(ValueError, match=r"model.txt: .* \.npz .* \.mat"):
    metrics.load_niqe_params(tmp_path / "model.txt")
  np.savez(tmp_path / "wrong.npz", mu=pristine.mu)
  with pytest.raises(ValueError, match="wrong.npz: no variable 'mu_pris_param'"):
    metrics.load_niqe_params(tmp_path / "wrong.npz")
  # numpy took it for a pickle and suggested allow_pickle=True (issue #27).
  (tmp_path / "corrupt.npz").write_bytes(b"not a zip archive")
  with pytest.raises(ValueError, match=r"corrupt.npz: not a readable .npz file \(not a zip"):
    metrics.load_niqe_params(tmp_path / "corrupt.npz")
  (tmp_path / "corrupt.mat").write_bytes(b"not a mat file")
  with pytest.raises(ValueError, match="corrupt.mat: not a readable .mat file"):
    metrics.load_niqe_params(tmp_path / "corrupt.mat")
  with pytest.raises(ValueError, match="RGB uint8 HxWx3"):
    metrics.niqe(np.zeros((200, 200, 3), np.float32), pristine)
  with pytest.raises(ValueError, match=r"two 96x96 blocks, the image has 96x120"):
    metrics.niqe(np.zeros((100, 124, 3), np.uint8), pristine, crop_border=2)
