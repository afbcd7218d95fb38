"""Blur kernels of Real-ESRGAN: Gaussian, generalized Gaussian, plateau, sinc, and their random mix.

Conventions (BasicSR's): a kernel entry at row i, column j sits at offset x = (j - c, i - c) from
the centre c, so x[0] is the column offset; Sigma = R diag(sig_x^2, sig_y^2) R^T with R the
rotation by theta; an isotropic kernel ignores sig_y and theta. Every kernel sums to 1.

Random kernels are computed on one 21x21 grid and masked to their drawn size, which equals a
size-k kernel zero-padded to 21x21 (what Real-ESRGAN's dataset does) and keeps one static shape for
every draw, so a batch of kernels of mixed types and sizes is one vectorised computation.
"""

import math

import jax
import jax.numpy as jnp

PADDED_SIZE = 21
# Kernel types in the order of Real-ESRGAN's kernel_list; SINC is the extra p=sinc_prob branch.
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
SINC = len(KERNEL_TYPES)


def _offsets(kernel_size: int):
  """(k, k, 2) grid of (column, row) offsets from the centre."""
  ax = jnp.arange(kernel_size, dtype=jnp.float32) - (kernel_size - 1) / 2
  xx, yy = jnp.meshgrid(ax, ax)
  return jnp.stack([xx, yy], axis=-1)


def _quadratic_form(grid, sig_x, sig_y, theta, isotropic):
  """x^T Sigma^-1 x at every grid point."""
  if isotropic:
    sig_y, theta = sig_x, jnp.zeros_like(sig_x)
  c, s = jnp.cos(theta), jnp.sin(theta)
  # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T, written out so that no 2x2 inverse is needed.
  a, d = 1 / sig_x**2, 1 / sig_y**2
  inv00 = c * c * a + s * s * d
  inv11 = s * s * a + c * c * d
  inv01 = c * s * (a - d)
  x, y = grid[..., 0], grid[..., 1]
  return inv00 * x * x + 2 * inv01 * x * y + inv11 * y * y


def _normalise(kernel, mask=None):
  if mask is not None:
    kernel = jnp.where(mask, kernel, 0.0)
  return kernel / jnp.sum(kernel, axis=(-2, -1), keepdims=True)


def bivariate_gaussian(kernel_size: int, sig_x, sig_y, theta, isotropic: bool = True):
  """exp(-x^T Sigma^-1 x / 2), normalised; (k, k) float32."""
  q = _quadratic_form(_offsets(kernel_size), sig_x, sig_y, theta, isotropic)
  return _normalise(jnp.exp(-0.5 * q))


def bivariate_generalized_gaussian(kernel_size: int, sig_x, sig_y, theta, beta,
                                   isotropic: bool = True):
  """exp(-(x^T Sigma^-1 x)^beta / 2), normalised."""
  q = _quadratic_form(_offsets(kernel_size), sig_x, sig_y, theta, isotropic)
  return _normalise(jnp.exp(-0.5 * q**beta))


def bivariate_plateau(kernel_size: int, sig_x, sig_y, theta, beta, isotropic: bool = True):
  """1 / ((x^T Sigma^-1 x)^beta + 1), normalised."""
  q = _quadratic_form(_offsets(kernel_size), sig_x, sig_y, theta, isotropic)
  return _normalise(1 / (q**beta + 1))


def bessel_j1(x):
  """J1 by Abramowitz & Stegun 9.4.4 (|x| <= 3) and 9.4.6 (|x| > 3), absolute error < 1e-7."""
  ax = jnp.abs(x)
  small = ax <= 3
  t2 = (jnp.where(small, ax, 3.0) / 3) ** 2
  p = (0.5 + t2 * (-0.56249985 + t2 * (0.21093573 + t2 * (-0.03954289 + t2 * (
      0.00443319 + t2 * (-0.00031761 + t2 * 0.00001109))))))
  j_small = ax * p
  u = 3 / jnp.where(small, 3.0, ax)
  f1 = (0.79788456 + u * (0.00000156 + u * (0.01659667 + u * (0.00017105 + u * (
      -0.00249511 + u * (0.00113653 + u * -0.00020033))))))
  th = (ax - 2.35619449 + u * (0.12499612 + u * (0.00005650 + u * (-0.00637879 + u * (
      0.00074348 + u * (0.00079824 + u * -0.00029166))))))
  j_large = f1 * jnp.cos(th) / jnp.sqrt(jnp.where(small, 3.0, ax))
  return jnp.sign(x) * jnp.where(small, j_small, j_large)


def _sinc_on_grid(grid, cutoff):
  r = jnp.sqrt(grid[..., 0]**2 + grid[..., 1]**2)
  safe_r = jnp.where(r == 0, 1.0, r)
  kernel = cutoff * bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
  return jnp.where(r == 0, cutoff**2 / (4 * math.pi), kernel)


def circular_lowpass_kernel(cutoff, kernel_size: int):
  """The 2D sinc (ideal circular low-pass) filter with cutoff in radians, normalised; odd k."""
  return _normalise(_sinc_on_grid(_offsets(kernel_size), cutoff))


def _size_mask(size):
  """(21, 21) mask of the centred size x size square."""
  grid = _offsets(PADDED_SIZE)
  half = (size - 1) / 2
  return (jnp.abs(grid[..., 0]) <= half) & (jnp.abs(grid[..., 1]) <= half)


def between(u, bounds):
  """U[bounds] from u ~ U[0, 1)."""
  return bounds[0] + (bounds[1] - bounds[0]) * u


def categorical(u, probs):
  """An index drawn with probabilities probs (static) from u ~ U[0, 1): inverse CDF."""
  cumulative = jnp.cumsum(jnp.asarray(probs, jnp.float32))
  index = jnp.searchsorted(cumulative, u * cumulative[-1], side="right")
  return jnp.minimum(index, len(probs) - 1).astype(jnp.int32)


def _beta(u_side, u_value, beta_range):
  # Real-ESRGAN draws below 1 or above 1 with equal odds (so a range starting at 1 gives beta = 1
  # half the time).
  return jnp.where(u_side < 0.5, between(u_value, (beta_range[0], 1.0)),
                   between(u_value, (1.0, beta_range[1])))


# Every random draw of a kernel is one of these uniforms: one threefry call for all of them, where
# a call per draw costs XLA's CPU compiler time for each call.
KERNEL_UNIFORMS = 9


def kernel_from_uniforms(u, kernel_cfg):
  """random_kernel's kernel and parameters from u, KERNEL_UNIFORMS draws of U[0, 1)."""
  sizes = jnp.asarray(kernel_cfg.sizes, jnp.int32)
  size = sizes[categorical(u[0], (1.0,) * len(kernel_cfg.sizes))]
  is_sinc = u[1] < kernel_cfg.sinc_prob
  kind = jnp.where(is_sinc, SINC, categorical(u[2], kernel_cfg.kernel_prob))
  sig_x = between(u[3], kernel_cfg.sigma)
  sig_y = between(u[4], kernel_cfg.sigma)
  theta = between(u[5], kernel_cfg.rotation)
  isotropic = (kind % 2 == 0)
  sig_y = jnp.where(isotropic, sig_x, sig_y)
  theta = jnp.where(isotropic, 0.0, theta)
  beta = jnp.where(kind >= 4, _beta(u[6], u[7], kernel_cfg.betap),
                   _beta(u[6], u[7], kernel_cfg.betag))
  beta = jnp.where(kind < 2, 1.0, beta)  # Gaussian: exponent 1.
  cutoff = jnp.where(size < 13, between(u[8], kernel_cfg.sinc_cutoff_small),
                     between(u[8], kernel_cfg.sinc_cutoff_large))
  kernel = _kernel_from_params(size, kind, sig_x, sig_y, theta, beta, cutoff)
  params = dict(size=size, kind=kind, sigma_x=sig_x, sigma_y=sig_y, theta=theta, beta=beta,
                cutoff=cutoff)
  return kernel, params


def random_kernel(key, kernel_cfg):
  """One random kernel of Real-ESRGAN's mix, zero-padded to 21x21, and its drawn parameters.

  kernel_cfg: sizes, sinc_prob, kernel_prob (6 probabilities in KERNEL_TYPES order), sigma,
  rotation, betag, betap, sinc_cutoff_small / sinc_cutoff_large (cutoff ranges for sizes < 13 and
  >= 13). Returns (kernel (21, 21), params dict of scalars).
  """
  return kernel_from_uniforms(jax.random.uniform(key, (KERNEL_UNIFORMS,)), kernel_cfg)


def _kernel_from_params(size, kind, sig_x, sig_y, theta, beta, cutoff):
  grid = _offsets(PADDED_SIZE)
  q = _quadratic_form(grid, sig_x, sig_y, theta, isotropic=False)
  q_beta = jnp.where(q > 0, q, 1.0) ** beta
  q_beta = jnp.where(q > 0, q_beta, 0.0)
  gaussian = jnp.exp(-0.5 * q_beta)  # beta = 1 for the plain Gaussian kinds.
  plateau = 1 / (q_beta + 1)
  sinc = _sinc_on_grid(grid, cutoff)
  kernel = jnp.where(kind == SINC, sinc, jnp.where(kind >= 4, plateau, gaussian))
  return _normalise(kernel, _size_mask(size))


SINC_UNIFORMS = 2


def sinc_from_uniforms(u, sizes, cutoff_range):
  size = jnp.asarray(sizes, jnp.int32)[categorical(u[0], (1.0,) * len(sizes))]
  cutoff = between(u[1], cutoff_range)
  kernel = _normalise(_sinc_on_grid(_offsets(PADDED_SIZE), cutoff), _size_mask(size))
  return kernel, dict(size=size, cutoff=cutoff)


def random_sinc_kernel(key, sizes, cutoff_range):
  """Real-ESRGAN's final sinc: size from `sizes`, cutoff U[cutoff_range], padded to 21x21."""
  return sinc_from_uniforms(jax.random.uniform(key, (SINC_UNIFORMS,)), sizes, cutoff_range)


def pulse_kernel():
  """The 21x21 identity kernel."""
  return jnp.zeros((PADDED_SIZE, PADDED_SIZE), jnp.float32).at[10, 10].set(1.0)
