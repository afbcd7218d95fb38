"""Gaussian and Poisson noise of Real-ESRGAN, colour or gray, per sample, on NHWC [0, 1].

Grey noise: BasicSR's torch code draws ONE gray Gaussian field per batch and scales it by each
sample's sigma, so every gray-noised image of a batch carries the same pattern. Here each sample
draws its own field from its own key: that is what the paper describes, it keeps a sample's LR a
function of its own key alone (so it does not depend on how the batch is split over devices), and
the distribution of every single image is unchanged.

Poisson noise follows BasicSR: the image is rounded to 8-bit levels, the number of distinct levels
L of each sample (gray image for gray noise, all channels for colour) is rounded up to a power of
two, vals = 2^ceil(log2 L), and noise = (Poisson(img vals) / vals - img) * scale.
"""

import jax
import jax.numpy as jnp

# torchvision's rgb_to_grayscale weights, used by BasicSR's gray Poisson noise.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _per_sample(x, n):
  return jnp.broadcast_to(jnp.asarray(x, jnp.float32), (n,)).reshape(n, 1, 1, 1)


def gaussian_noise(key, images, sigma, gray):
  """The noise field: N(0, sigma / 255) per pixel, the same for all channels where gray."""
  n, h, w, c = images.shape
  k_colour, k_gray = jax.random.split(key)
  sigma = _per_sample(sigma, n) / 255.0
  colour = jax.random.normal(k_colour, images.shape, jnp.float32) * sigma
  gray_field = jax.random.normal(k_gray, (n, h, w, 1), jnp.float32) * sigma
  gray = _per_sample(gray, n)
  return colour * (1 - gray) + gray_field * gray


def _round8(x):
  return jnp.clip(jnp.round(x * 255.0), 0, 255) / 255.0


def _levels(images, mask):
  """2^ceil(log2(number of distinct 8-bit levels)) per sample, counted where mask is 1."""
  n = images.shape[0]
  idx = jnp.round(images * 255.0).astype(jnp.int32).reshape(n, -1)
  seen = jnp.zeros((n, 256), jnp.float32).at[jnp.arange(n)[:, None], idx].max(
      jnp.broadcast_to(mask, images.shape).reshape(n, -1))
  count = jnp.maximum(jnp.sum(seen, axis=1), 1.0)
  return (2.0 ** jnp.ceil(jnp.log2(count))).reshape(n, 1, 1, 1)


def poisson_noise(key, images, scale, gray, mask=None):
  """The noise field of BasicSR's generate_poisson_noise_pt; mask limits the level count to each
  sample's valid region (a canvas)."""
  n = images.shape[0]
  if mask is None:
    mask = jnp.ones(images.shape[:3] + (1,), jnp.float32)
  img = _round8(images)
  luma = _round8(sum(w * images[..., i:i + 1] for i, w in enumerate(GRAY_WEIGHTS)))
  levels = jnp.concatenate([img, luma], axis=-1)
  vals = jnp.concatenate([jnp.broadcast_to(_levels(img, mask), img.shape),
                          jnp.broadcast_to(_levels(luma, mask), luma.shape)], axis=-1)
  # One sampler for colour and gray: jax.random.poisson compiles to a large loop.
  counts = jax.random.poisson(key, levels * vals, levels.shape).astype(jnp.float32)
  field = counts / vals - levels
  colour, gray_field = field[..., :3], field[..., 3:]
  gray = _per_sample(gray, n)
  return (colour * (1 - gray) + gray_field * gray) * _per_sample(scale, n)


def add_gaussian_noise(key, images, sigma, gray=False, clip=True):
  out = images + gaussian_noise(key, images, sigma, gray)
  return jnp.clip(out, 0, 1) if clip else out


def add_poisson_noise(key, images, scale, gray=False, clip=True):
  out = images + poisson_noise(key, images, scale, gray)
  return jnp.clip(out, 0, 1) if clip else out


def random_noise_params(key, n, noise_cfg):
  """Per-sample draws: sigma U[noise_cfg.gaussian_sigma], Poisson scale U[noise_cfg.poisson_scale],
  gray with p = noise_cfg.gray_prob."""
  k_sigma, k_scale, k_gray = jax.random.split(key, 3)
  lo, hi = noise_cfg.gaussian_sigma
  sigma = jax.random.uniform(k_sigma, (n,), minval=lo, maxval=hi)
  lo, hi = noise_cfg.poisson_scale
  scale = jax.random.uniform(k_scale, (n,), minval=lo, maxval=hi)
  gray = jax.random.uniform(k_gray, (n,)) < noise_cfg.gray_prob
  return dict(sigma=sigma, poisson_scale=scale, gray=gray)


def random_add_gaussian_noise(key, images, sigma_range, gray_prob):
  k_p, k_n = jax.random.split(key)
  p = random_noise_params(k_p, images.shape[0], _Cfg(sigma_range, (1, 1), gray_prob))
  return add_gaussian_noise(k_n, images, p["sigma"], p["gray"])


def random_add_poisson_noise(key, images, scale_range, gray_prob):
  k_p, k_n = jax.random.split(key)
  p = random_noise_params(k_p, images.shape[0], _Cfg((1, 1), scale_range, gray_prob))
  return add_poisson_noise(k_n, images, p["poisson_scale"], p["gray"])


class _Cfg:
  def __init__(self, gaussian_sigma, poisson_scale, gray_prob):
    self.gaussian_sigma, self.poisson_scale, self.gray_prob = (gaussian_sigma, poisson_scale,
                                                               gray_prob)
