"""esrgan_jax.metrics against scikit-image's PSNR, SSIM and YCbCr on photographs skimage ships.

The expected values are computed independently: Y by skimage.color.rgb2ycbcr, PSNR by
peak_signal_noise_ratio, SSIM by structural_similarity's full map cropped to the 'valid' region of
an 11x11 window. Only the rounding to uint8, which is the convention itself, is restated here.
"""

import numpy as np
import pytest
import skimage.color
import skimage.data
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from esrgan_jax import metrics

SIZE = 48
SSIM_HALF_WINDOW = 5  # skimage's full map also covers the borders; the 'valid' part starts here


def photographs():
  """Three 48x48 uint8 RGB crops with texture, edges and smooth areas."""
  return np.stack([skimage.data.astronaut()[120:120 + SIZE, 200:200 + SIZE],
                   skimage.data.coffee()[100:100 + SIZE, 250:250 + SIZE],
                   skimage.data.chelsea()[60:60 + SIZE, 150:150 + SIZE]])


def super_resolved(hr, seed=0):
  """A plausible float32 SR output: bicubic x4 down and up, plus noise that leaves [0, 1] a bit."""
  rng = np.random.default_rng(seed)
  outputs = []
  for image in hr:
    small = Image.fromarray(image).resize((SIZE // 4, SIZE // 4), Image.BICUBIC)
    outputs.append(np.asarray(small.resize((SIZE, SIZE), Image.BICUBIC), np.float32) / 255)
  sr = np.stack(outputs) + rng.normal(0, 0.03, hr.shape).astype(np.float32)
  assert sr.min() < 0 and sr.max() > 1  # clipping is exercised
  return sr


def to_uint8(img):
  """The convention: clip float images to [0, 1], scale by 255 and round half to even (float32)."""
  if img.dtype == np.uint8:
    return img
  return np.round(np.clip(img, 0, 1) * np.float32(255)).astype(np.uint8)


def skimage_y(img):
  return skimage.color.rgb2ycbcr(to_uint8(img))[..., 0]


def crop(img, border):
  return img[border:img.shape[0] - border, border:img.shape[1] - border]


def skimage_psnr_ssim(img1, img2, crop_border, test_y_channel):
  """PSNR and 'valid' SSIM of one HWC pair, computed by scikit-image on float64 data."""
  if test_y_channel:
    a, b = skimage_y(img1), skimage_y(img2)
    channel_axis = None
  else:
    a, b = to_uint8(img1).astype(np.float64), to_uint8(img2).astype(np.float64)
    channel_axis = -1
  a, b = crop(a, crop_border), crop(b, crop_border)
  psnr = peak_signal_noise_ratio(a, b, data_range=255)
  _, ssim_map = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=255,
                                      channel_axis=channel_axis, full=True)
  return psnr, crop(ssim_map, SSIM_HALF_WINDOW).mean()


# ----------------------------------------------------------------------------------------------
# NumPy metrics against scikit-image.


def test_rgb_to_y_matches_skimage_ycbcr():
  hr = photographs()
  sr = super_resolved(hr)
  np.testing.assert_allclose(metrics.rgb_to_y(hr)[..., 0], skimage_y(hr), atol=1e-10)
  np.testing.assert_allclose(metrics.rgb_to_y(sr)[..., 0], skimage_y(sr), atol=1e-10)
  single = metrics.rgb_to_y(hr[0])
  assert single.shape == (SIZE, SIZE, 1) and single.dtype == np.float64
  assert 16 <= single.min() and single.max() <= 235


@pytest.mark.parametrize("test_y_channel", [True, False])
@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_and_ssim_match_skimage(crop_border, test_y_channel):
  hr = photographs()
  sr = super_resolved(hr)
  for sr_image, hr_image in zip(sr, hr):
    expected_psnr, expected_ssim = skimage_psnr_ssim(sr_image, hr_image, crop_border,
                                                     test_y_channel)
    psnr = metrics.psnr(sr_image, hr_image, crop_border, test_y_channel)
    ssim = metrics.ssim(sr_image, hr_image, crop_border, test_y_channel)
    assert isinstance(psnr, float) and isinstance(ssim, float)
    assert 15 < psnr < 40 and 0.3 < ssim < 0.99  # a real degradation, not a trivial pair
    assert abs(psnr - expected_psnr) < 1e-4
    assert abs(ssim - expected_ssim) < 1e-5


def test_batches_give_one_value_per_image():
  hr = photographs()
  sr = super_resolved(hr)
  for metric in (metrics.psnr, metrics.ssim):
    batched = metric(sr, hr, 4)
    assert batched.shape == (len(hr),)
    np.testing.assert_allclose(batched, [metric(s, h, 4) for s, h in zip(sr, hr)], rtol=1e-12)


def test_float_images_are_clipped_and_rounded_to_uint8_first():
  hr = photographs()
  sr = super_resolved(hr)
  sr_uint8 = to_uint8(sr)
  for metric in (metrics.psnr, metrics.ssim):
    assert metric(sr[0], hr[0], 4) == metric(sr_uint8[0], hr[0], 4)
    # Float HR given as uint8 / 255 is the same image.
    assert metric(sr[0], hr[0] / np.float32(255), 4) == metric(sr[0], hr[0], 4)


def test_identical_images_have_infinite_psnr_and_unit_ssim():
  hr = photographs()
  assert metrics.psnr(hr[0], hr[0], 4) == np.inf
  assert metrics.psnr(hr[0], hr[0], 4, test_y_channel=False) == np.inf
  assert metrics.ssim(hr[0], hr[0], 4) == pytest.approx(1.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Bad input gives one clear ValueError.


def test_shape_mismatch_names_both_shapes():
  hr = photographs()
  with pytest.raises(ValueError, match=r"\(48, 48, 3\) and \(40, 48, 3\)"):
    metrics.psnr(hr[0], hr[0, :40], 4)


def test_crop_larger_than_the_image_is_rejected():
  hr = photographs()
  with pytest.raises(ValueError, match=r"crop_border=24 leaves 0x0 pixels .*\(48, 48, 3\)"):
    metrics.psnr(hr[0], hr[0], 24)
  # SSIM needs a whole 11x11 window after the crop.
  with pytest.raises(ValueError, match=r"crop_border=19 leaves 10x10 pixels .* 11x11"):
    metrics.ssim(hr[0], hr[0], 19)
  with pytest.raises(ValueError, match="non-negative"):
    metrics.psnr(hr[0], hr[0], -1)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((48, 48), np.uint8), "HWC or NHWC"),
    (np.zeros((48, 48, 1), np.uint8), "3 channels"),
    (np.zeros((48, 48, 3), np.int16), "uint8, got int16"),
    (np.full((48, 48, 3), 200.0), "pass 0-255 data as uint8"),
])
def test_unusable_images_are_rejected_by_name(bad, message):
  with pytest.raises(ValueError, match=message):
    metrics.psnr(bad, bad, 4)
  with pytest.raises(ValueError, match=message):
    metrics.rgb_to_y(bad)
