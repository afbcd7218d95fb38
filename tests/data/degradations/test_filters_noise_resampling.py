"""filter2d, resize, USM and noise against PyTorch references written from BasicSR's formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esrgan_jax.data import degradations as deg
from esrgan_jax.data.degradations import filters, noise, resampling


# Jitted once per module: eager calls dispatch (and compile) every primitive per new shape.
FILTER2D = jax.jit(deg.filter2d)
RESIZE = jax.jit(deg.resize, static_argnums=(1, 2))
RESIZE_SCALE_FACTOR = jax.jit(deg.resize_scale_factor, static_argnums=(1, 2))
POISSON_NOISE = jax.jit(noise.poisson_noise)


@functools.partial(jax.jit, static_argnums=(5,))
def _canvas_resize(x, h, oh, w, ow, canvas_out, mode):
  """Sizes and mode traced, as in the pipeline: one program for every call below."""
  rows = resampling.resize_matrix(h, oh, x.shape[1], canvas_out, mode)
  cols = resampling.resize_matrix(w, ow, x.shape[2], canvas_out, mode)
  return resampling.apply_resize(x, rows[None], cols[None])


def _nchw(x):
  return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)


def _nhwc(t):
  return t.permute(0, 2, 3, 1).numpy()


def torch_filter2d(img, kernel):
  """BasicSR's filter2D: reflect pad by k // 2, grouped conv2d with one kernel per sample."""
  k = kernel.size(-1)
  b, c, h, w = img.size()
  img = F.pad(img, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
  ph, pw = img.shape[-2:]
  kernel = kernel.view(b, 1, k, k).repeat(1, c, 1, 1).view(b * c, 1, k, k)
  return F.conv2d(img.reshape(1, b * c, ph, pw), kernel, groups=b * c).view(b, c, h, w)


def torch_usm(img, weight=0.5, radius=50, threshold=10):
  if radius % 2 == 0:
    radius += 1
  sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel(radius, 0)
  x = np.arange(radius) - (radius - 1) / 2
  g = np.exp(-x**2 / (2 * sigma**2))
  g = (g / g.sum())[:, None]
  kernel = torch.from_numpy(np.dot(g, g.T)).float()[None]
  kernel = kernel.expand(img.shape[0], -1, -1)
  blur = torch_filter2d(img, kernel)
  residual = img - blur
  mask = (torch.abs(residual) * 255 > threshold).float()
  soft = torch_filter2d(mask, kernel)
  sharp = torch.clip(img + weight * residual, 0, 1)
  return soft * sharp + (1 - soft) * img


def test_filter2d_matches_torch():
  rng = np.random.default_rng(0)
  x = rng.random((3, 30, 26, 3), dtype=np.float32)
  k = rng.random((3, 21, 21), dtype=np.float32)
  k /= k.sum(axis=(1, 2), keepdims=True)
  ref = _nhwc(torch_filter2d(_nchw(x), torch.from_numpy(k)))
  np.testing.assert_allclose(FILTER2D(jnp.asarray(x), jnp.asarray(k)), ref, atol=1e-5)


def test_filter2d_on_a_canvas_equals_filtering_the_crop():
  rng = np.random.default_rng(1)
  x = rng.random((2, 40, 40, 3), dtype=np.float32)
  k = rng.random((2, 7, 7), dtype=np.float32)
  valid = (np.array([23, 40]), np.array([31, 12]))
  out = np.asarray(FILTER2D(jnp.asarray(x), jnp.asarray(k), (jnp.asarray(valid[0]),
                                                               jnp.asarray(valid[1]))))
  for i in range(2):
    h, w = valid[0][i], valid[1][i]
    ref = _nhwc(torch_filter2d(_nchw(x[i:i + 1, :h, :w]), torch.from_numpy(k[i:i + 1])))
    np.testing.assert_allclose(out[i, :h, :w], ref[0], atol=1e-5)
    assert np.all(out[i, h:] == 0) and np.all(out[i, :, w:] == 0)


def test_usm_matches_torch():
  rng = np.random.default_rng(2)
  x = np.clip(rng.random((2, 64, 60, 3), dtype=np.float32) ** 2, 0, 1)
  ref = _nhwc(torch_usm(_nchw(x)))
  np.testing.assert_allclose(deg.usm_sharp(jnp.asarray(x)), ref, atol=1e-4)


@pytest.mark.parametrize("mode", resampling.MODES)
def test_resize_matches_torch(mode):
  rng = np.random.default_rng(3)
  x = rng.random((2, 19, 24, 3), dtype=np.float32)
  t = _nchw(x)
  for size in ((7, 31), (19, 24), (45, 10)):
    np.testing.assert_allclose(RESIZE(jnp.asarray(x), size, mode),
                               _nhwc(F.interpolate(t, size=size, mode=mode)), atol=1e-5)
  for s in (0.15, 0.61, 1.0, 1.37):
    ref = _nhwc(F.interpolate(t, scale_factor=s, mode=mode))
    out = RESIZE_SCALE_FACTOR(jnp.asarray(x), s, mode)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("mode", range(3))
def test_canvas_resize_matches_torch_on_the_valid_part(mode):
  """The pipeline's form: traced sizes, inputs and outputs in the corner of fixed canvases."""
  rng = np.random.default_rng(4)
  canvas_in, canvas_out = 40, 30
  x = rng.random((1, canvas_in, canvas_in, 3), dtype=np.float32)
  for (h, w), (oh, ow) in (((33, 21), (12, 29)), ((40, 17), (30, 5))):
    out = np.asarray(_canvas_resize(jnp.asarray(x), h, oh, w, ow, canvas_out, mode))
    ref = _nhwc(F.interpolate(_nchw(x[:, :h, :w]), size=(oh, ow), mode=resampling.MODES[mode]))
    np.testing.assert_allclose(out[:, :oh, :ow], ref, atol=1e-5)
    assert np.all(out[:, oh:] == 0) and np.all(out[:, :, ow:] == 0)


def test_gaussian_noise_sigma_and_gray():
  key = jax.random.key(0, impl="threefry2x32")
  img = jnp.full((2, 64, 64, 3), 0.5)
  field = np.asarray(noise.gaussian_noise(key, img, jnp.array([5.0, 20.0]),
                                          jnp.array([False, True])))
  assert abs(field[0].std() * 255 - 5) < 0.2 and abs(field[1].std() * 255 - 20) < 0.8
  assert np.all(field[1, ..., 0] == field[1, ..., 2])
  assert np.abs(field[0, ..., 0] - field[0, ..., 1]).max() > 0


def test_poisson_noise_follows_basicsr():
  rng = np.random.default_rng(5)
  # Levels 0..99 of 255: 100 distinct values, so vals = 128 (2^ceil(log2 100)).
  levels = rng.integers(0, 100, (1, 64, 64, 3))
  levels.reshape(-1)[:100] = np.arange(100)
  img = jnp.asarray(levels / 255.0, jnp.float32)
  key = jax.random.key(1, impl="threefry2x32")
  assert float(noise._levels(noise._codes(img), jnp.ones((1, 64, 64, 1)))[0]) == 128
  field = np.asarray(POISSON_NOISE(key, img, 2.0, False))
  x = np.asarray(img)
  # noise = (Poisson(x v) / v - x) * scale: mean 0, variance x scale^2 / v.
  assert abs(field.mean()) < 3e-3
  np.testing.assert_allclose(field.var(), (x * 4 / 128).mean(), rtol=0.05)
  gray = np.asarray(POISSON_NOISE(key, img, 1.0, True))
  assert np.all(gray[..., 0] == gray[..., 1])


def test_blur_matrix_is_reflect_padded_correlation_even_when_the_pad_folds_twice():
  kernel = filters.gaussian_kernel_1d(51).astype(np.float64)
  for size in (7, 30, 64):  # a pad of 25 folds several times over 7 pixels
    x = np.random.default_rng(size).random(size)
    padded = np.pad(x, 25, mode="reflect")
    ref = np.array([padded[i:i + 51] @ kernel for i in range(size)])
    np.testing.assert_allclose(filters.blur_matrix(size, 51) @ x, ref, atol=1e-6)


def test_fft_lengths_are_the_next_5_smooth_number():
  assert [filters.fft_length(n) for n in (1, 7, 31, 49, 276, 620)] == [1, 8, 32, 50, 288, 625]
