"""FID, KID and IS of image sets, on the FID InceptionV3 (pytorch-fid's `pt_inception-2015-12-05`).

SR evaluation sets hold a handful of images, far too few samples for a 2048-dimensional Gaussian,
so every image gives `grid x grid` fixed crops of `crop_size x crop_size` pixels (default 3 x 3 =
9 crops of 128 px: Set14 gives 126 samples), their corners evenly spaced from the top-left to the
bottom-right corner of the image (they overlap on images under grid * crop_size pixels). Each crop
goes through the network as pytorch-fid feeds an image: RGB in [0, 1], resized bilinearly to
299x299 (no antialiasing) and mapped to [-1, 1] (models/inception.py), pool features (2048) for
FID and KID, the 1008 logits without the fc bias for IS (the original TF code, and
torch-fidelity's `logits_unbiased`, read `pool_3 @ W` before the bias).

- FID (Heusel et al. 2017): |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr sqrt(S_1 S_2).
  `frechet_distance(mu1, sigma1, mu2, sigma2)` is pytorch-fid's `calculate_frechet_distance`
  (scipy.linalg.sqrtm, an eps * I offset when the product is singular, the real part when the
  imaginary one is negligible). From features, `fid` uses the same formula without a 2048 x 2048
  matrix root: with X, Y the centred feature rows, S_1 S_2 has the non-zero eigenvalues of
  (X Y^T)(Y X^T) / ((n-1)(m-1)), so tr sqrt(S_1 S_2) is the nuclear norm of X Y^T over
  sqrt((n-1)(m-1)) -- exact, and seconds instead of a minute of sqrtm on a CPU.
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 on
  `kid_subsets` random subsets of m = min(n_x, n_y, kid_subset_size) samples of each set, drawn
  without replacement (clean-fid's and torch-fidelity's scheme); the mean and the standard
  deviation over the subsets.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) of the softmax over the 1008 classes, on
  `splits` consecutive equal parts of the samples; the mean and the standard deviation over them.

The network runs jitted (on the accelerator when there is one), one compilation per (crop size,
crops per image); the statistics are NumPy float64.
"""

import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special

from esrgan_jax.models.inception import NUM_CLASSES, NUM_FEATURES, InceptionV3FID
from esrgan_jax.weights import inception as inception_weights

CROP_SIZE = 128
GRID = 3
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10
KERNEL_CACHE_SAMPLES = 4096  # KID keeps the kernel of all pairs up to this many samples a set
FID_EPS = 1e-6  # pytorch-fid's offset for a singular covariance product
# pytorch-fid refuses a matrix root whose diagonal has an imaginary part above this.
IMAGINARY_TOLERANCE = 1e-3
SET_METRICS = ("fid", "kid", "is")
HIGHER_IS_BETTER = {"fid": False, "kid": False, "is": True}


def crop_corners(size: int, crop: int, grid: int) -> list[int]:
  """`grid` offsets from 0 to size - crop, evenly spaced and rounded down."""
  if size < crop:
    raise ValueError(f"FID crops are {crop}x{crop} pixels, the image has only {size} in one "
                     "direction")
  if grid == 1:
    return [(size - crop) // 2]
  return [(size - crop) * k // (grid - 1) for k in range(grid)]


def image_crops(image: np.ndarray, crop_size: int = CROP_SIZE, grid: int = GRID) -> np.ndarray:
  """(grid * grid, crop_size, crop_size, 3) crops of an RGB HxWx3 image, row by row."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"FID takes RGB HxWx3 images, got shape {image.shape}")
  rows = crop_corners(image.shape[0], crop_size, grid)
  cols = crop_corners(image.shape[1], crop_size, grid)
  return np.stack([image[r:r + crop_size, c:c + crop_size] for r in rows for c in cols])


def _unit(images) -> jax.Array:
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return jnp.clip(images.astype(jnp.float32), 0.0, 1.0)


@jax.jit
def _inception(variables, crops):
  """(pool features, logits without the fc bias) of NHWC crops, uint8 or float in [0, 1]."""
  features, logits = InceptionV3FID().apply(variables, _unit(crops))
  return features, logits - variables["params"]["fc"]["bias"]


# ----------------------------------------------------------------------------------------------
# Set statistics, NumPy float64.


def _as_features(features, name: str, width: Optional[int] = None) -> np.ndarray:
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or (width is not None and features.shape[1] != width):
    raise ValueError(f"{name} must be a (samples, {width or 'features'}) array, got shape "
                     f"{features.shape}")
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{name} holds NaN or infinite values")
  return features


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
  """pytorch-fid's Frechet distance of two Gaussians, with scipy's matrix square root."""
  mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
  sigma1 = np.atleast_2d(sigma1).astype(np.float64)
  sigma2 = np.atleast_2d(sigma2).astype(np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"frechet_distance: means {mu1.shape}, {mu2.shape} and covariances "
                     f"{sigma1.shape}, {sigma2.shape} do not match")
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.all(np.isfinite(covmean)):
    # A singular product has no finite root from scipy's Schur method; pytorch-fid's way out.
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    largest = np.max(np.abs(np.diagonal(covmean).imag))
    if largest > IMAGINARY_TOLERANCE:
      raise ValueError(f"frechet_distance: the covariance product's square root has an imaginary "
                       f"part of {largest:.3g}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(features1, features2) -> float:
  """FID of two sets of features (samples, d), each of at least two samples."""
  x, y = _as_features(features1, "features1"), _as_features(features2, "features2")
  if x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
    raise ValueError(f"FID needs two sets of at least two samples of one width, got shapes "
                     f"{x.shape} and {y.shape}")
  mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
  x, y = x - mu1, y - mu2
  n, m = len(x), len(y)
  trace1, trace2 = np.sum(x * x) / (n - 1), np.sum(y * y) / (m - 1)
  # tr sqrt(S_1 S_2) = ||X Y^T||_* / sqrt((n-1)(m-1)); see the module docstring.
  cross = np.linalg.svd(x @ y.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
  diff = mu1 - mu2
  # Rounding can leave an exact zero a hair below it.
  return float(max(diff @ diff + trace1 + trace2 - 2 * cross, 0.0))


def kid(features1, features2, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
  """(mean, std) over `subsets` random subsets of the unbiased MMD^2, cubic polynomial kernel."""
  x_all, y_all = _as_features(features1, "features1"), _as_features(features2, "features2")
  if x_all.shape[1] != y_all.shape[1]:
    raise ValueError(f"KID: feature widths differ, {x_all.shape[1]} and {y_all.shape[1]}")
  m = min(len(x_all), len(y_all), subset_size)
  if m < 2:
    raise ValueError(f"KID needs at least two samples in each set, got {len(x_all)} and "
                     f"{len(y_all)}")
  d = x_all.shape[1]
  kernel = lambda a, b: (a @ b.T / d + 1)**3
  # SR sets give a few hundred samples: the kernel of all pairs once, then each subset indexes it.
  whole = max(len(x_all), len(y_all)) <= KERNEL_CACHE_SAMPLES
  if whole:
    all_xx, all_yy, all_xy = kernel(x_all, x_all), kernel(y_all, y_all), kernel(x_all, y_all)
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(subsets):
    i = rng.choice(len(x_all), m, replace=False)
    j = rng.choice(len(y_all), m, replace=False)
    if whole:
      k_xx, k_yy, k_xy = all_xx[np.ix_(i, i)], all_yy[np.ix_(j, j)], all_xy[np.ix_(i, j)]
    else:
      x, y = x_all[i], y_all[j]
      k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    values.append(within - 2 * k_xy.mean())
  return float(np.mean(values)), float(np.std(values))


def inception_score(logits, splits: int = IS_SPLITS) -> tuple[float, float]:
  """(mean, std) over `splits` consecutive parts of exp(E KL(p(y|x) || p(y)))."""
  logits = _as_features(logits, "logits")
  if not 1 <= splits <= len(logits):
    raise ValueError(f"IS: {splits} splits of {len(logits)} samples")
  # In logs throughout, so a class no sample believes in gives 0 * finite, not 0 * (-inf + inf).
  log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
  scores = []
  for part in np.array_split(log_p, splits):
    p = np.exp(part)
    log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
    scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), axis=1))))
  return float(np.mean(scores)), float(np.std(scores))


def set_metrics(features, logits, reference_features, kid_subsets: int = KID_SUBSETS,
                kid_subset_size: int = KID_SUBSET_SIZE, is_splits: int = IS_SPLITS,
                seed: int = 0) -> dict[str, float]:
  """fid, kid, kid_std (features against reference_features), is, is_std (of logits)."""
  kid_mean, kid_std = kid(features, reference_features, kid_subsets, kid_subset_size, seed)
  is_mean, is_std = inception_score(logits, min(is_splits, len(logits)))
  return {"fid": fid(features, reference_features), "kid": kid_mean, "kid_std": kid_std,
          "is": is_mean, "is_std": is_std}


# ----------------------------------------------------------------------------------------------
# The metric of a set of images.


class FidMetric:
  """Inception features of SR and HR images, added image by image; `result()` measures the set.

    metric = FidMetric.from_dir(config.eval.inception_weights)  # written by convert --inception
    for sr, hr in pairs:
      metric.add(sr, hr)                                         # RGB uint8 HxWx3
    metric.result()  # {"fid", "kid", "kid_std", "is", "is_std"}
  """

  def __init__(self, variables, crop_size: int = CROP_SIZE, grid: int = GRID,
               kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
               is_splits: int = IS_SPLITS, seed: int = 0):
    if crop_size < 1 or grid < 1:
      raise ValueError(f"FID crops: crop_size and grid must be >= 1, got {crop_size} and {grid}")
    self.variables = jax.device_put(variables, jax.local_devices()[0])
    self.crop_size, self.grid = crop_size, grid
    self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
    self.is_splits, self.seed = is_splits, seed
    self.reset()

  @classmethod
  def from_dir(cls, path: str | os.PathLike, **settings) -> "FidMetric":
    return cls(inception_weights.load_inception_variables(path), **settings)

  def reset(self) -> None:
    self._sr_features, self._sr_logits, self._hr_features = [], [], []

  def features(self, image) -> tuple[np.ndarray, np.ndarray]:
    """(pool features (crops, 2048), unbiased logits (crops, 1008)) of one RGB image."""
    features, logits = _inception(self.variables, image_crops(image, self.crop_size, self.grid))
    return np.asarray(features, np.float64), np.asarray(logits, np.float64)

  def add(self, sr, hr) -> None:
    features, logits = self.features(sr)
    self._sr_features.append(features)
    self._sr_logits.append(logits)
    self._hr_features.append(self.features(hr)[0])

  def result(self) -> dict[str, float]:
    if not self._sr_features:
      raise ValueError("FID: no images were added")
    return self.measure(np.concatenate(self._sr_features), np.concatenate(self._sr_logits),
                        np.concatenate(self._hr_features))

  def measure(self, features, logits, reference_features) -> dict[str, float]:
    """The set metrics of features gathered elsewhere (evaluation gathers them per process)."""
    return set_metrics(features, logits, reference_features, self.kid_subsets,
                       self.kid_subset_size, self.is_splits, self.seed)

