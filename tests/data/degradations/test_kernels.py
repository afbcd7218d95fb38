"""Blur kernels against NumPy/SciPy references written from BasicSR's published formulas."""

import math

import jax
import numpy as np
import pytest
from scipy import special

from configs.realesrgan_degradation import get_degradation_config
from esrgan_jax.data import degradations as deg
from esrgan_jax.data.degradations import kernels


def _grid(k):
  ax = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
  xx, yy = np.meshgrid(ax, ax)
  return np.stack([xx, yy], axis=-1)


def _sigma(sx, sy, theta, isotropic):
  if isotropic:
    return np.array([[sx**2, 0], [0, sx**2]])
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return rot @ np.diag([sx**2, sy**2]) @ rot.T


def _quad(k, sx, sy, theta, isotropic):
  inv = np.linalg.inv(_sigma(sx, sy, theta, isotropic))
  g = _grid(k)
  return np.sum(np.dot(g, inv) * g, 2)


def ref_gaussian(k, sx, sy, theta, isotropic):
  kern = np.exp(-0.5 * _quad(k, sx, sy, theta, isotropic))
  return kern / kern.sum()


def ref_generalized(k, sx, sy, theta, beta, isotropic):
  kern = np.exp(-0.5 * np.power(_quad(k, sx, sy, theta, isotropic), beta))
  return kern / kern.sum()


def ref_plateau(k, sx, sy, theta, beta, isotropic):
  kern = np.reciprocal(np.power(_quad(k, sx, sy, theta, isotropic), beta) + 1)
  return kern / kern.sum()


def ref_sinc(cutoff, k):
  c = (k - 1) / 2
  with np.errstate(divide="ignore", invalid="ignore"):
    kern = np.fromfunction(
        lambda x, y: cutoff * special.j1(cutoff * np.sqrt((x - c)**2 + (y - c)**2)) /
        (2 * np.pi * np.sqrt((x - c)**2 + (y - c)**2)), [k, k])
  kern[(k - 1) // 2, (k - 1) // 2] = cutoff**2 / (4 * np.pi)
  return kern / kern.sum()


CASES = [(7, 0.3, 2.5, 0.4), (13, 2.9, 0.7, -2.1), (21, 1.4, 1.9, 3.0)]


@pytest.mark.parametrize("k,sx,sy,theta", CASES)
@pytest.mark.parametrize("isotropic", [True, False])
def test_gaussian_family_matches_reference(k, sx, sy, theta, isotropic):
  np.testing.assert_allclose(deg.bivariate_gaussian(k, sx, sy, theta, isotropic),
                             ref_gaussian(k, sx, sy, theta, isotropic), atol=1e-6)
  for beta in (0.5, 1.7, 4.0):
    np.testing.assert_allclose(
        deg.bivariate_generalized_gaussian(k, sx, sy, theta, beta, isotropic),
        ref_generalized(k, sx, sy, theta, beta, isotropic), atol=1e-6)
  for beta in (1.0, 1.5, 2.0):
    np.testing.assert_allclose(deg.bivariate_plateau(k, sx, sy, theta, beta, isotropic),
                               ref_plateau(k, sx, sy, theta, beta, isotropic), atol=1e-6)


@pytest.mark.parametrize("k", [7, 13, 21])
@pytest.mark.parametrize("cutoff", [math.pi / 5, 1.3, math.pi])
def test_sinc_matches_reference(k, cutoff):
  np.testing.assert_allclose(deg.circular_lowpass_kernel(cutoff, k), ref_sinc(cutoff, k),
                             atol=1e-6)


def test_random_kernels_equal_their_type_padded_to_21():
  cfg = get_degradation_config().kernel1
  keys = jax.random.split(jax.random.key(3, impl="threefry2x32"), 60)
  kerns, params = jax.tree.map(np.asarray, jax.jit(jax.vmap(
      lambda k: kernels.random_kernel(k, cfg)))(keys))
  seen = set()
  for i in range(60):
    p = {name: float(v[i]) for name, v in params.items()}
    k, kind = int(p["size"]), int(p["kind"])
    seen.add(kind)
    iso = kind % 2 == 0
    if kind == kernels.SINC:
      ref = ref_sinc(p["cutoff"], k)
    elif kind < 2:
      ref = ref_gaussian(k, p["sigma_x"], p["sigma_y"], p["theta"], iso)
    elif kind < 4:
      ref = ref_generalized(k, p["sigma_x"], p["sigma_y"], p["theta"], p["beta"], iso)
    else:
      ref = ref_plateau(k, p["sigma_x"], p["sigma_y"], p["theta"], p["beta"], iso)
    pad = (21 - k) // 2
    np.testing.assert_allclose(kerns[i], np.pad(ref, pad), atol=1e-6, err_msg=str(p))
  assert len(seen) >= 5


def _within(count, n, p, se=4.0):
  sd = math.sqrt(n * p * (1 - p))
  assert abs(count - n * p) <= se * sd + 1, (count, n, p)


def test_random_kernel_statistics():
  cfg = get_degradation_config().kernel2
  n = 6000
  keys = jax.random.split(jax.random.key(11, impl="threefry2x32"), n)
  _, p = jax.jit(jax.vmap(lambda k: kernels.random_kernel(k, cfg)))(keys)
  p = jax.tree.map(np.asarray, p)
  kind, size = p["kind"], p["size"]
  _within(np.sum(kind == kernels.SINC), n, cfg.sinc_prob)
  for t, prob in enumerate(cfg.kernel_prob):
    _within(np.sum(kind == t), n, (1 - cfg.sinc_prob) * prob)
  for s in cfg.sizes:
    _within(np.sum(size == s), n, 1 / len(cfg.sizes))
  gauss = kind != kernels.SINC
  lo, hi = cfg.sigma
  assert lo <= p["sigma_x"][gauss].min() and p["sigma_x"][gauss].max() <= hi
  aniso = kind % 2 == 1
  assert np.all(p["sigma_y"][~aniso & gauss] == p["sigma_x"][~aniso & gauss])
  assert np.all(p["theta"][~aniso & gauss] == 0)
  assert p["theta"][aniso].min() < -2.5 and p["theta"][aniso].max() > 2.5
  gen, plat = (kind == 2) | (kind == 3), (kind == 4) | (kind == 5)
  assert 0.5 <= p["beta"][gen].min() < 0.6 and 3.8 < p["beta"][gen].max() <= 4
  _within(np.sum(p["beta"][gen] < 1), gen.sum(), 0.5)
  # Plateau: U[1, 1) = 1 half of the time (Real-ESRGAN's draw), else U[1, 2].
  _within(np.sum(p["beta"][plat] == 1), plat.sum(), 0.5)
  assert p["beta"][plat].max() <= 2
  sinc = kind == kernels.SINC
  small, large = sinc & (size < 13), sinc & (size >= 13)
  assert math.pi / 3 <= p["cutoff"][small].min() and p["cutoff"][small].max() <= math.pi
  assert math.pi / 5 <= p["cutoff"][large].min() < math.pi / 3 - 0.05
