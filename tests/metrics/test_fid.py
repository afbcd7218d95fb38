"""FID, KID and IS (esrgan_jax/metrics/fid.py) against NumPy references written here from the
formulas, and FidMetric on a random FID Inception (made here from the PyTorch reference)."""

import numpy as np
import pytest
import skimage.data
import torch

from esrgan_jax.metrics import fid
from esrgan_jax.weights import inception as inception_weights
from reference import torch_inception

CROP, GRID = 32, 2  # 4 small crops an image keep the random network cheap


def reference_trace_sqrt(sigma1, sigma2):
  """tr sqrt(S1 S2) from the eigenvalues of S1 S2 (real and >= 0: similar to S1^1/2 S2 S1^1/2)."""
  eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).real
  return np.sum(np.sqrt(np.clip(eigenvalues, 0, None)))


def reference_fid(x, y):
  mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  return np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2) - 2 * reference_trace_sqrt(s1, s2)


def gaussian(rng, n, d, shift=0.0, scale=1.0):
  mixing = rng.normal(size=(d, d)) / np.sqrt(d)
  return shift + scale * rng.normal(size=(n, d)) @ (np.eye(d) + 0.5 * mixing)


def test_frechet_distance_and_fid_equal_the_reference_formula():
  rng = np.random.default_rng(0)
  x, y = gaussian(rng, 200, 8), gaussian(rng, 150, 8, shift=0.3, scale=1.4)
  expected = reference_fid(x, y)
  got = fid.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                             np.cov(y, rowvar=False))
  assert expected > 1
  np.testing.assert_allclose(got, expected, rtol=1e-9)
  np.testing.assert_allclose(fid.fid(x, y), expected, rtol=1e-9)
  # Fewer samples than dimensions (as on SR sets): singular covariances, same value.
  x, y = gaussian(rng, 20, 64), gaussian(rng, 30, 64, shift=0.2)
  np.testing.assert_allclose(fid.fid(x, y), reference_fid(x, y), rtol=1e-6)
  assert fid.fid(x, x) == pytest.approx(0, abs=1e-9)


def reference_mmd2(x, y):
  """Unbiased MMD^2 by its definition: means over pairs i != j within a set, all pairs across."""
  d = x.shape[1]
  kernel = lambda a, b: (a @ b / d + 1)**3
  m = len(x)
  within = sum(kernel(x[i], x[j]) + kernel(y[i], y[j])
               for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return within - 2 * across


@pytest.mark.parametrize("cached_kernel", [True, False])
def test_kid_equals_the_definition_on_the_same_subsets(cached_kernel, monkeypatch):
  if not cached_kernel:  # the per-subset path of large sets
    monkeypatch.setattr(fid, "KERNEL_CACHE_SAMPLES", 0)
  rng = np.random.default_rng(1)
  x, y = gaussian(rng, 14, 5), gaussian(rng, 12, 5, shift=0.5)
  subsets, size = 3, 9
  draws = np.random.default_rng(7)  # the subsets kid draws with seed 7, in its order
  values = []
  for _ in range(subsets):
    xs = x[draws.choice(len(x), size, replace=False)]
    ys = y[draws.choice(len(y), size, replace=False)]
    values.append(reference_mmd2(xs, ys))
  mean, std = fid.kid(x, y, subsets=subsets, subset_size=size, seed=7)
  np.testing.assert_allclose(mean, np.mean(values), rtol=1e-10)
  np.testing.assert_allclose(std, np.std(values), rtol=1e-10)


def test_kid_is_unbiased_on_one_known_gaussian():
  rng = np.random.default_rng(2)
  d, n, draws = 16, 20, 400
  unbiased, biased = [], []
  for _ in range(draws):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    unbiased.append(fid.kid(x, y, subsets=1, subset_size=n)[0])
    k = lambda a, b: (a @ b.T / d + 1)**3
    biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())  # the V-statistic
  error = np.std(unbiased) / np.sqrt(draws)
  assert abs(np.mean(unbiased)) < 3 * error
  # The test can tell: keeping the diagonal puts the mean many standard errors above zero.
  assert np.mean(biased) > 10 * np.std(biased) / np.sqrt(draws)


def test_inception_score_on_hand_made_logits():
  assert fid.inception_score(np.zeros((6, 1008)), splits=2) == pytest.approx((1.0, 0.0))
  one_hot = np.full((5, 1008), -1e4)
  one_hot[np.arange(5), [3, 17, 200, 999, 4]] = 0
  assert fid.inception_score(one_hot, splits=1)[0] == pytest.approx(5.0, rel=1e-9)
  logits = np.random.default_rng(3).normal(0, 2, (12, 20))
  expected = []
  for part in (logits[:6], logits[6:]):
    p = np.exp(part) / np.exp(part).sum(axis=1, keepdims=True)
    marginal = p.mean(axis=0)
    expected.append(np.exp(np.mean([np.sum(q * np.log(q / marginal)) for q in p])))
  got = fid.inception_score(logits, splits=2)
  np.testing.assert_allclose(got, (np.mean(expected), np.std(expected)), rtol=1e-10)


def test_crops_lie_on_a_fixed_grid():
  image = np.arange(50 * 70 * 3).reshape(50, 70, 3)
  crops = fid.image_crops(image, 20, 3)
  assert crops.shape == (9, 20, 20, 3)
  np.testing.assert_array_equal(crops[0], image[:20, :20])
  np.testing.assert_array_equal(crops[5], image[15:35, 50:70])
  np.testing.assert_array_equal(crops[8], image[30:, 50:])
  with pytest.raises(ValueError, match="20x20"):
    fid.image_crops(image[:19], 20, 3)


@pytest.fixture(scope="module")
def networks():
  calibration = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)
  net = torch_inception.random_fid_inception(0, calibration)
  return net, inception_weights.inception_variables_from_torch(torch_inception.numpy_state_dict(net))


def photos():
  return [skimage.data.astronaut()[::4, ::4], skimage.data.coffee()[::4, ::4],
          skimage.data.chelsea()[::4, ::4]]


def test_fid_metric_on_a_random_inception(networks):
  torch_net, variables = networks
  metric = fid.FidMetric(variables, crop_size=CROP, grid=GRID, kid_subsets=10, is_splits=1)
  hr = photos()
  measured = [metric.features(image) for image in hr]
  hr_features = np.concatenate([f for f, _ in measured])
  same = metric.measure(hr_features, np.concatenate([l for _, l in measured]), hr_features)
  # (KID of a set against itself is not ~0: the unbiased estimator assumes independent sets.)
  assert same["fid"] == pytest.approx(0, abs=1e-6)
  assert 1 <= same["is"] <= len(hr) * GRID * GRID

  # The features are the PyTorch reference's on the crops; IS reads the logits without fc's bias.
  crops = fid.image_crops(hr[0], CROP, GRID).astype(np.float32) / 255
  with torch.no_grad():
    want_features, want_logits = torch_net(torch_inception.to_nchw(crops))
    want_logits = want_logits - torch_net.fc.bias
  np.testing.assert_allclose(measured[0][0], want_features.numpy(), atol=1e-4)
  np.testing.assert_allclose(measured[0][1], want_logits.numpy(), atol=1e-4)

  rng = np.random.default_rng(4)
  noise = [rng.normal(size=image.shape) for image in hr]
  noisy = lambda sigma: [np.clip(image + sigma * n, 0, 255).astype(np.uint8)
                         for image, n in zip(hr, noise)]
  scores, kids = [], []
  for sigma in (4, 16, 48):
    if sigma == 16:  # the accumulating interface, on one level
      metric.reset()
      for sr, image in zip(noisy(sigma), hr):
        metric.add(sr, image)
      result = metric.result()
    else:
      measured = [metric.features(image) for image in noisy(sigma)]
      result = metric.measure(np.concatenate([f for f, _ in measured]),
                              np.concatenate([l for _, l in measured]), hr_features)
    scores.append(result["fid"])
    kids.append(result["kid"])
  assert 0 < scores[0] < scores[1] < scores[2], scores
  assert kids[0] < kids[1] < kids[2], kids
