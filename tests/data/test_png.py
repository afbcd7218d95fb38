"""The one PNG encoder: every filter a decoder must undo, every format, strip by strip."""

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from esrgan_jax.data import images, png


def rows_for_every_filter() -> np.ndarray:
  """A gray image whose rows 1-4 are each cheapest under one filter, then photo rows (Paeth)."""
  rng = np.random.default_rng(0)
  width = 24
  above = rng.integers(0, 256, width).astype(np.uint8)
  average = np.zeros(width, np.uint8)  # Each byte is the mean of its left and upper neighbours.
  for i in range(width):
    average[i] = (int(average[i - 1] if i else 0) + int(above[i])) // 2
  ramp = (np.arange(width) * 5).astype(np.uint8)
  crafted = np.stack([above, average, np.zeros(width, np.uint8), ramp, ramp])
  photo = skimage.data.camera()[100:112, 100:100 + width]
  return np.concatenate([crafted, photo])[..., None]


def test_each_row_gets_its_cheapest_filter_and_pillow_undoes_all_five(monkeypatch):
  image = rows_for_every_filter()
  rows = image.reshape(image.shape[0], -1)
  kinds = png.filter_rows(rows, np.zeros(rows.shape[1], np.uint8), 1)[:, 0]
  # Average, None (a zero row), Sub (a ramp), Up (the ramp again); photos mostly Paeth.
  assert list(kinds[1:5]) == [3, 0, 1, 2] and set(kinds) == {0, 1, 2, 3, 4}
  monkeypatch.setattr(png, "STRIP_BYTES", 3 * 24 * png.SCRATCH_PER_BYTE)  # 3-row strips.
  encoded = io.BytesIO()
  png.write_png(encoded, image)
  decoded = np.asarray(Image.open(io.BytesIO(encoded.getvalue())))
  np.testing.assert_array_equal(decoded, image[..., 0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_format_decodes_to_the_same_pixels(tmp_path, monkeypatch, dtype, channels):
  monkeypatch.setattr(png, "STRIP_BYTES", 700 * png.SCRATCH_PER_BYTE)  # Several strips.
  rng = np.random.default_rng(channels)
  smooth = np.cumsum(rng.integers(-3, 4, (29, 31, channels)), axis=1) * (257 if dtype == np.uint16
                                                                         else 1)
  image = np.clip(smooth + np.iinfo(dtype).max // 2, 0, np.iinfo(dtype).max).astype(dtype)
  path = tmp_path / "x.png"
  images.write_image(path, image)
  np.testing.assert_array_equal(images.read_image_any(path), image)
  with Image.open(path) as pil:  # Pillow reads every file we write (16-bit colour as 8 bits).
    pil.load()
    assert pil.size == (31, 29)
    if dtype == np.uint8 or channels == 1:
      np.testing.assert_array_equal(np.asarray(pil).reshape(image.shape), image)


def test_bad_arrays_are_refused():
  for array in (np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32),
                np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)):
    with pytest.raises(ValueError, match="expected non-empty uint8/uint16 HxWxC"):
      png.write_png(io.BytesIO(), array)
