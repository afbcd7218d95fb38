"""The LR | bicubic | SR | HR comparison picture."""

import numpy as np
import pytest

from esrgan_jax.evaluation.comparison import comparison_strip


def _images(scale=4, height=24, width=20, seed=0):
  rng = np.random.RandomState(seed)
  lr = rng.randint(0, 256, (height // scale, width // scale, 3)).astype(np.uint8)
  bicubic, sr, hr = (rng.randint(0, 256, (height, width, 3)).astype(np.uint8) for _ in range(3))
  return lr, bicubic, sr, hr


def test_panels_in_order_with_white_separators():
  lr, bicubic, sr, hr = _images()
  strip = comparison_strip(lr, bicubic, sr, hr, separator=3)
  assert strip.dtype == np.uint8 and strip.shape == (24, 4 * 20 + 3 * 3, 3)
  # Each LR pixel becomes a 4x4 block.
  np.testing.assert_array_equal(strip[:, :20], np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
  for k, panel in enumerate((bicubic, sr, hr), start=1):
    left = k * (20 + 3)
    np.testing.assert_array_equal(strip[:, left - 3:left], 255)
    np.testing.assert_array_equal(strip[:, left:left + 20], panel)


def test_same_centre_crop_of_every_panel():
  lr, bicubic, sr, hr = _images()
  strip = comparison_strip(lr, bicubic, sr, hr, crop=(8, 12), separator=2)
  assert strip.shape == (8, 4 * 12 + 3 * 2, 3)
  # Rows 8..16 and columns 4..16 of the HR size; in LR pixels rows 2..4 and columns 1..4.
  lr_crop = np.repeat(np.repeat(lr[2:4, 1:4], 4, axis=0), 4, axis=1)
  np.testing.assert_array_equal(strip[:, :12], lr_crop)
  np.testing.assert_array_equal(strip[:, 14:26], bicubic[8:16, 4:16])
  np.testing.assert_array_equal(strip[:, 28:40], sr[8:16, 4:16])
  np.testing.assert_array_equal(strip[:, 42:54], hr[8:16, 4:16])
  # A crop larger than the image shows the whole image.
  assert comparison_strip(lr, bicubic, sr, hr, crop=100).shape == (24, 4 * 20 + 3 * 4, 3)


def test_float_uint16_and_gray_inputs_become_uint8_rgb():
  lr, bicubic, sr, hr = _images()
  strip = comparison_strip(lr / 255.0, bicubic.astype(np.uint16) * 257, sr[..., 0], hr,
                           separator=0)
  np.testing.assert_array_equal(strip[:, :20], np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
  np.testing.assert_array_equal(strip[:, 20:40], bicubic)
  np.testing.assert_array_equal(strip[:, 40:60], np.repeat(sr[..., :1], 3, axis=-1))


def test_float_panels_round_halfway_levels_to_even():
  lr, bicubic, _, hr = _images()
  sr = np.broadcast_to(np.array([2.5, 4.5, 6.5]) / 255.0, (24, 20, 3))
  strip = comparison_strip(lr, bicubic, sr, hr, separator=0)
  np.testing.assert_array_equal(strip[:, 40:60], np.broadcast_to([2, 4, 6], (24, 20, 3)))


def test_mismatched_sizes_are_refused():
  lr, bicubic, sr, hr = _images()
  with pytest.raises(ValueError, match="sr is 23x20, but hr is 24x20"):
    comparison_strip(lr, bicubic, sr[:23], hr)
  with pytest.raises(ValueError, match="lr must be HxW or HxWxC"):
    comparison_strip(lr[..., :2], bicubic, sr, hr)


def test_labels_sit_in_a_caption_bar_above_unchanged_panels():
  lr, bicubic, sr, hr = _images(height=96, width=80)
  plain = comparison_strip(lr, bicubic, sr, hr, separator=3)
  labels = ("LR", "bicubic PSNR-Y 29.99 dB", "SR PSNR-Y 30.63 dB", "HR")
  strip = comparison_strip(lr, bicubic, sr, hr, separator=3, labels=labels)
  bar_height = strip.shape[0] - plain.shape[0]
  assert 8 < bar_height < 40 and strip.shape[1] == plain.shape[1]
  np.testing.assert_array_equal(strip[bar_height:], plain)
  bar = strip[:bar_height]
  for k in range(4):
    left = k * (80 + 3)
    caption = bar[:, left:left + 80]
    assert (caption < 128).any(), f"no text over panel {k}"  # dark text on white
    assert (caption == 255).mean() > 0.5
    if k:
      np.testing.assert_array_equal(bar[:, left - 3:left], 255)
  # Text is drawn, not a fixed pattern: other captions give another bar.
  other = comparison_strip(lr, bicubic, sr, hr, separator=3, labels=("a", "b", "c", "d"))
  assert not np.array_equal(other[:bar_height], bar)
  with pytest.raises(ValueError, match="labels must name the 4 panels"):
    comparison_strip(lr, bicubic, sr, hr, labels=("LR", "HR"))
