"""MATLAB bicubic imresize: checked against a slow reference written here from MATLAB's formulas.

The reference below follows `contributions()` of MATLAB's imresize.m one output pixel at a time:
u = x / scale + 0.5 * (1 - 1 / scale), left = floor(u - width / 2), ceil(width) + 2 taps, weights
h(u - index) normalised to sum 1, indices mirrored with aux = [1:n, n:-1:1]; when downscaling with
antialiasing h(t) = scale * k(scale * t) and width = width / scale. It shares no code with
esrgan_jax.data.bicubic. The reference itself is first checked against outputs of MATLAB that were
published on Stack Overflow, with the bilinear (triangle) kernel where that is what was published.
"""

import math

import numpy as np
import pytest

from esrgan_jax.data import bicubic


def cubic_kernel(t):
  t = abs(t)
  if t <= 1:
    return 1.5 * t**3 - 2.5 * t**2 + 1
  if t <= 2:
    return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
  return 0.0


def triangle_kernel(t):
  return max(0.0, 1.0 - abs(t))


def reference_taps(x, in_length, scale, kernel=cubic_kernel, width=4.0, antialias=True):
  """[(0-based input index, weight)] of 1-based output pixel x, per MATLAB's contributions()."""
  if scale < 1 and antialias:
    h = lambda t: scale * kernel(scale * t)
    width = width / scale
  else:
    h = kernel
  u = x / scale + 0.5 * (1 - 1 / scale)
  left = math.floor(u - width / 2)
  taps = []
  for p in range(math.ceil(width) + 2):
    index = left + p  # 1-based, possibly outside [1, in_length].
    m = (index - 1) % (2 * in_length)
    taps.append((m if m < in_length else 2 * in_length - 1 - m, h(u - index)))
  total = sum(w for _, w in taps)
  return [(i, w / total) for i, w in taps]


def reference_imresize(image, out_shape, scales, **kernel_args):
  """Float resize, output pixel by output pixel: out[i, j] = sum_p sum_q w_p w_q image[p, q]."""
  image = np.asarray(image, np.float64)
  out = np.zeros(tuple(out_shape) + image.shape[2:])
  for i in range(out_shape[0]):
    row_taps = reference_taps(i + 1, image.shape[0], scales[0], **kernel_args)
    for j in range(out_shape[1]):
      col_taps = reference_taps(j + 1, image.shape[1], scales[1], **kernel_args)
      out[i, j] = sum(wp * wq * image[p, q] for p, wp in row_taps for q, wq in col_taps)
  return out


def reference_resize_uint8(image, out_shape, scales, dim_order):
  """uint8 resize as MATLAB does it: one dim at a time, rounding half away from zero after each.

  Also returns where the last rounding met a tie to within float error (x.5 +- 1e-9): there
  the summation order decides, and MATLAB's own order is not documented.
  """
  result = np.asarray(image, np.float64)
  for dim in dim_order:
    moved = np.moveaxis(result, dim, 0)
    out = np.zeros((out_shape[dim],) + moved.shape[1:])
    for x in range(out_shape[dim]):
      out[x] = sum(w * moved[i] for i, w in reference_taps(x + 1, moved.shape[0], scales[dim]))
    near_tie = np.moveaxis(np.abs(out - np.floor(out) - 0.5) < 1e-9, 0, dim)
    result = np.moveaxis(np.floor(np.clip(out, 0, 255) + 0.5), 0, dim)
  return result.astype(np.uint8), near_tie


def assert_uint8_equal_except_ties(result, expected_and_ties):
  expected, near_tie = expected_and_ties
  difference = np.abs(result.astype(int) - expected)
  assert np.all(difference[~near_tie] == 0)
  assert np.all(difference[near_tie] <= 1)


def random_image(shape, seed=0):
  return np.random.default_rng(seed).random(shape)


# MATLAB outputs published on Stack Overflow. M = reshape(0:15, 4, 4).' (0..15 row by row):
# https://stackoverflow.com/questions/26812289 (answer 26812346, "MATLAB vs C++ vs OpenCV - imresize"):
#   imresize(M, 0.5, 'bilinear', 'AntiAliasing', true)  -> [3.125 4.875; 10.125 11.875]
#   imresize(M, 0.5, 'bilinear', 'AntiAliasing', false) -> [2.5 4.5; 10.5 12.5]
#   imresize(M, 0.5, 'bicubic', 'AntiAliasing', false)  -> [2.1875 4.3125; 10.6875 12.8125]
# https://dsp.stackexchange.com/questions/14560: imresize([100 50 0], [1 5], 'bilinear')
#   -> [100 80 50 20 0]
SO_4X4 = np.arange(16.0).reshape(4, 4)


@pytest.mark.parametrize("antialias, expected", [
    (True, [[3.125, 4.875], [10.125, 11.875]]),
    (False, [[2.5, 4.5], [10.5, 12.5]]),
])
def test_reference_matches_published_matlab_bilinear_downscale(antialias, expected):
  result = reference_imresize(SO_4X4, (2, 2), (0.5, 0.5), kernel=triangle_kernel, width=2.0,
                              antialias=antialias)
  np.testing.assert_allclose(result, expected, atol=1e-12)


def test_reference_matches_published_matlab_bilinear_upscale():
  # Scale 5 / 3 from an output size: checks the coordinate map u and the mirrored left border.
  row = reference_imresize(np.array([[100.0, 50.0, 0.0]]), (1, 5), (1.0, 5 / 3),
                           kernel=triangle_kernel, width=2.0)
  np.testing.assert_allclose(row, [[100, 80, 50, 20, 0]], atol=1e-9)


def test_matches_published_matlab_bicubic_without_antialiasing():
  np.testing.assert_allclose(bicubic.imresize(SO_4X4, 0.5, antialias=False),
                             [[2.1875, 4.3125], [10.6875, 12.8125]], atol=1e-12)


@pytest.mark.parametrize("shape, scale", [
    ((24, 24, 3), 1 / 2),
    ((24, 18, 3), 1 / 3),
    ((32, 20, 3), 1 / 4),
    ((17, 23, 3), 1 / 4),  # Odd sizes: ceil(17 / 4) = 5 rows, mirrored taps at both borders.
    ((13, 9), 1 / 3),  # Grayscale HxW.
    ((7, 10, 3), 2.0),  # Upscaling: no antialiasing stretch.
    ((5, 6), 3.0),
])
def test_float_matches_reference(shape, scale):
  image = random_image(shape, seed=len(shape) + shape[0])
  out_shape = (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))
  expected = reference_imresize(image, out_shape, (scale, scale))
  result = bicubic.imresize(image, scale)
  assert result.shape == out_shape + shape[2:]
  assert result.dtype == np.float64
  np.testing.assert_allclose(result, expected, atol=1e-5)


def test_without_antialiasing_matches_reference():
  image = random_image((16, 12, 3))
  expected = reference_imresize(image, (4, 3), (0.25, 0.25), antialias=False)
  np.testing.assert_allclose(bicubic.imresize(image, 0.25, antialias=False), expected, atol=1e-5)


def test_output_shape_with_different_scales_per_dim():
  image = random_image((12, 20, 3))
  expected = reference_imresize(image, (18, 5), (18 / 12, 5 / 20))
  np.testing.assert_allclose(bicubic.imresize(image, output_shape=(18, 5)), expected, atol=1e-5)


def test_float32_in_float32_out():
  image = random_image((16, 16, 3)).astype(np.float32)
  result = bicubic.imresize(image, 0.5)
  assert result.dtype == np.float32
  np.testing.assert_allclose(result, reference_imresize(image, (8, 8), (0.5, 0.5)), atol=1e-5)


@pytest.mark.parametrize("in_shape, out_shape", [
    ((24, 20, 3), (6, 5)),  # Equal scales: H first.
    ((12, 20, 3), (18, 5)),  # W has the smaller scale, so MATLAB resizes W first.
    ((20, 12), (5, 18)),  # H has the smaller scale.
])
def test_uint8_rounds_after_each_dim_in_matlab_order(in_shape, out_shape):
  image = (random_image(in_shape, seed=3) * 255).round().astype(np.uint8)
  scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
  order = (1, 0) if scales[1] < scales[0] else (0, 1)
  result = bicubic.imresize(image, output_shape=out_shape)
  assert result.dtype == np.uint8
  assert_uint8_equal_except_ties(result, reference_resize_uint8(image, out_shape, scales, order))


def test_uint8_rounds_half_away_from_zero():
  # Upscaling x2 only along W (H is copied exactly): the weights are multiples of 1/128, so some
  # outputs of integer pixels land exactly on .5, where round-half-to-even would differ.
  image = (random_image((8, 64), seed=5) * 255).round().astype(np.uint8)
  exact = bicubic.imresize(image.astype(np.float64), output_shape=(8, 128))
  ties = (exact - np.floor(exact) == 0.5) & (exact > 0) & (exact < 255)
  assert ties.any(), "the seed should give at least one exact tie"
  result = bicubic.imresize(image, output_shape=(8, 128))
  np.testing.assert_array_equal(result[ties], np.floor(exact[ties]) + 1)


def test_uint8_saturates():
  # Bicubic overshoots at a hard edge; uint8 results must clip rather than wrap.
  image = np.zeros((8, 8), np.uint8)
  image[:, 4:] = 255
  exact = bicubic.imresize(image.astype(np.float64), 2.0)
  assert exact.min() < 0 and exact.max() > 255
  result = bicubic.imresize(image, 2.0)
  assert result.min() == 0 and result.max() == 255


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2.0, 3.0])
def test_constant_image_stays_constant(scale):
  image = np.full((15, 11, 3), 0.3)
  np.testing.assert_allclose(bicubic.imresize(image, scale), 0.3, atol=1e-12)
  image_uint8 = np.full((15, 11, 3), 77, np.uint8)
  assert np.all(bicubic.imresize(image_uint8, scale) == 77)


@pytest.mark.parametrize("in_hw", [(96, 96), (97, 101), (10, 7), (1, 5)])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2.0])
def test_output_shape_is_ceil_of_scaled_size(in_hw, scale):
  result = bicubic.imresize(np.zeros(in_hw + (3,), np.float32), scale)
  assert result.shape == (math.ceil(in_hw[0] * scale), math.ceil(in_hw[1] * scale), 3)


def test_bicubic_downsample_uint8():
  hr = (random_image((24, 16, 3), seed=7) * 255).round().astype(np.uint8)
  lr = bicubic.bicubic_downsample_uint8(hr, 4)
  assert lr.shape == (6, 4, 3) and lr.dtype == np.uint8
  assert_uint8_equal_except_ties(lr, reference_resize_uint8(hr, (6, 4), (0.25, 0.25), (0, 1)))


@pytest.mark.parametrize("call, message", [
    (lambda: bicubic.imresize(np.zeros((4, 4))), "exactly one"),
    (lambda: bicubic.imresize(np.zeros((4, 4)), 0.5, output_shape=(2, 2)), "exactly one"),
    (lambda: bicubic.imresize(np.zeros((4, 4)), -2.0), "positive"),
    (lambda: bicubic.imresize(np.zeros((2, 4, 4, 3)), 0.5), "HxW"),
    (lambda: bicubic.imresize(np.zeros((4, 4), np.int32), 0.5), "dtype"),
    (lambda: bicubic.bicubic_downsample_uint8(np.zeros((8, 8, 3), np.uint8), 2.5), "integer"),
    (lambda: bicubic.bicubic_downsample_uint8(np.zeros((8, 8, 3)), 2), "uint8"),
])
def test_bad_arguments_raise_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_imresize_in_strips_equals_imresize(monkeypatch):
  image = np.random.RandomState(1).rand(37, 29, 3).astype(np.float32)
  monkeypatch.setattr(bicubic, "RESIZE_STRIP_BYTES", 2000)  # A few lines per strip.
  for shape in ((80, 61), (20, 70), (9, 11)):
    np.testing.assert_allclose(bicubic.imresize_in_strips(image, shape),
                               bicubic.imresize(image.astype(np.float64), output_shape=shape),
                               rtol=0, atol=1e-6)
