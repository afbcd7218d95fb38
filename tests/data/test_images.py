"""Image files in, image files out: each pixel format converted on purpose, each failure named."""

import os

import numpy as np
import pytest
from PIL import Image

from esrgan_jax import cli
from esrgan_jax.data import images


def gradient_rgb(height=12, width=16):
  y, x = np.mgrid[0:height, 0:width]
  return np.stack([x * 15, y * 20, (x + y) * 8], axis=-1).astype(np.uint8)


def random_array(shape, dtype, seed=0):
  return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def test_rgb_png(tmp_path):
  pixels = gradient_rgb()
  Image.fromarray(pixels).save(tmp_path / "rgb.png")
  result = images.read_image(tmp_path / "rgb.png")
  assert result.dtype == np.uint8 and result.shape == (12, 16, 3)
  np.testing.assert_array_equal(result, pixels)


def test_grayscale_becomes_three_equal_channels(tmp_path):
  gray = random_array((9, 7), np.uint8)
  Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
  result = images.read_image(tmp_path / "gray.png")
  assert result.shape == (9, 7, 3)
  for channel in range(3):
    np.testing.assert_array_equal(result[..., channel], gray)
  native = images.read_image_any(tmp_path / "gray.png")
  assert native.dtype == np.uint8 and native.shape == (9, 7, 1)
  np.testing.assert_array_equal(native[..., 0], gray)


def test_bilevel_image_reads_as_0_and_255(tmp_path):
  bits = random_array((6, 8), np.uint8) > 127
  Image.fromarray(bits).save(tmp_path / "bits.png")
  np.testing.assert_array_equal(images.read_image(tmp_path / "bits.png")[..., 0], bits * 255)


def test_rgba_drops_alpha_for_training_and_keeps_it_natively(tmp_path):
  rgba = random_array((5, 6, 4), np.uint8)
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
  np.testing.assert_array_equal(images.read_image(tmp_path / "rgba.png"), rgba[..., :3])
  native = images.read_image_any(tmp_path / "rgba.png")
  assert native.shape == (5, 6, 4)
  np.testing.assert_array_equal(native, rgba)


def test_gray_with_alpha_becomes_rgba(tmp_path):
  gray_alpha = random_array((5, 6, 2), np.uint8)
  Image.fromarray(gray_alpha, mode="LA").save(tmp_path / "la.png")
  native = images.read_image_any(tmp_path / "la.png")
  expected = gray_alpha[..., [0, 0, 0, 1]]
  np.testing.assert_array_equal(native, expected)
  np.testing.assert_array_equal(images.read_image(tmp_path / "la.png"), expected[..., :3])


def test_16bit_grayscale_png(tmp_path):
  values = np.array([[0, 128, 129, 385], [32896, 65406, 65407, 65535]], np.uint16)
  Image.fromarray(values).save(tmp_path / "gray16.png")
  native = images.read_image_any(tmp_path / "gray16.png")
  assert native.dtype == np.uint16 and native.shape == (2, 4, 1)
  np.testing.assert_array_equal(native[..., 0], values)
  result = images.read_image(tmp_path / "gray16.png")
  assert result.dtype == np.uint8 and result.shape == (2, 4, 3)
  # round(v / 257): 128 / 257 = 0.498, 129 / 257 = 0.502, 385 / 257 = 1.498,
  # 65406 / 257 = 254.498, 65407 / 257 = 254.502.
  np.testing.assert_array_equal(result[..., 0], [[0, 0, 1, 1], [128, 254, 255, 255]])
  np.testing.assert_array_equal(result[..., 0], np.round(values / 257.0))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_round_trip_keeps_every_bit(tmp_path, channels):
  pixels = random_array((7, 9, channels), np.uint16, seed=channels)
  path = tmp_path / f"deep{channels}.png"
  images.write_image(path, pixels)
  native = images.read_image_any(path)
  assert native.dtype == np.uint16
  np.testing.assert_array_equal(native, pixels)
  # An independent decoder: Pillow reads 16-bit colour as 8 bits by keeping the high byte.
  with Image.open(path) as pil:
    decoded = np.asarray(pil)
  if channels == 1:
    np.testing.assert_array_equal(decoded, pixels[..., 0])
  else:
    np.testing.assert_array_equal(decoded, (pixels >> 8).astype(np.uint8))
  expected_8bit = np.round(pixels / 257.0).astype(np.uint8)
  expected_8bit = np.repeat(expected_8bit, 3, axis=-1) if channels == 1 else expected_8bit[..., :3]
  np.testing.assert_array_equal(images.read_image(path), expected_8bit)


def test_palette_images(tmp_path):
  rgb = gradient_rgb(8, 8)
  palette_image = Image.fromarray(rgb).quantize(colors=16)
  palette_image.save(tmp_path / "palette.png")
  expected = np.asarray(palette_image.convert("RGB"))
  np.testing.assert_array_equal(images.read_image(tmp_path / "palette.png"), expected)
  assert images.read_image_any(tmp_path / "palette.png").shape == (8, 8, 3)

  palette_image.info["transparency"] = 0
  palette_image.save(tmp_path / "palette_alpha.png", transparency=0)
  native = images.read_image_any(tmp_path / "palette_alpha.png")
  assert native.shape == (8, 8, 4)
  indices = np.asarray(palette_image)
  np.testing.assert_array_equal(native[..., 3], np.where(indices == 0, 0, 255))
  np.testing.assert_array_equal(images.read_image(tmp_path / "palette_alpha.png"), expected)


def test_jpeg(tmp_path):
  pixels = gradient_rgb(32, 32)
  Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=95, subsampling=0)
  result = images.read_image(tmp_path / "photo.jpg")
  assert result.dtype == np.uint8 and result.shape == (32, 32, 3)
  assert np.mean(np.abs(result.astype(int) - pixels)) < 3  # Lossy, but close.


def test_jpeg_exif_orientation_is_applied(tmp_path):
  pixels = gradient_rgb(8, 16)
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display."
  Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
  assert images.read_image(tmp_path / "rotated.jpg").shape == (16, 8, 3)


@pytest.mark.parametrize("extension, channels", [
    ("png", 1), ("png", 3), ("png", 4), ("bmp", 1), ("bmp", 3),
    ("tif", 1), ("tif", 3), ("tif", 4), ("tiff", 3),
])
def test_lossless_round_trips(tmp_path, extension, channels):
  pixels = random_array((6, 5, channels), np.uint8, seed=channels)
  path = tmp_path / f"image.{extension}"
  images.write_image(path, pixels)
  np.testing.assert_array_equal(images.read_image_any(path), pixels)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_lossless_webp(tmp_path, mode):
  pixels = random_array((6, 5, len(mode)), np.uint8)
  Image.fromarray(pixels, mode=mode).save(tmp_path / "image.webp", lossless=True, exact=True)
  np.testing.assert_array_equal(images.read_image_any(tmp_path / "image.webp"), pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_tiff_round_trip(tmp_path, channels):
  import tifffile
  pixels = random_array((4, 6, channels), np.uint16, seed=channels)
  path = tmp_path / "deep.tif"
  images.write_image(path, pixels)
  np.testing.assert_array_equal(tifffile.imread(path).reshape(pixels.shape), pixels)
  np.testing.assert_array_equal(images.read_image_any(path), pixels)


def test_write_creates_parent_folders_and_accepts_hxw(tmp_path):
  gray = random_array((4, 5), np.uint8)
  path = tmp_path / "a" / "b" / "gray.png"
  images.write_image(path, gray)
  np.testing.assert_array_equal(images.read_image_any(path)[..., 0], gray)
  assert os.listdir(path.parent) == ["gray.png"]  # No temporary file left behind.


def test_jpeg_written_by_us_reads_back(tmp_path):
  pixels = gradient_rgb(16, 16)
  images.write_image(tmp_path / "out.jpeg", pixels)
  assert np.mean(np.abs(images.read_image(tmp_path / "out.jpeg").astype(int) - pixels)) < 3


def test_truncated_png_names_the_file(tmp_path):
  Image.fromarray(random_array((64, 64, 3), np.uint8)).save(tmp_path / "whole.png")
  data = (tmp_path / "whole.png").read_bytes()
  path = tmp_path / "cut.png"
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(images.ImageReadError, match="cut.png") as error:
    images.read_image(path)
  assert error.value.__cause__ is None and error.value.__suppress_context__


def test_truncated_16bit_colour_png_names_the_file(tmp_path):
  images.write_image(tmp_path / "whole16.png", random_array((32, 32, 3), np.uint16))
  data = (tmp_path / "whole16.png").read_bytes()
  (tmp_path / "cut16.png").write_bytes(data[: len(data) // 2])
  with pytest.raises(images.ImageReadError, match="cut16.png: corrupt or truncated"):
    images.read_image(tmp_path / "cut16.png")


@pytest.mark.parametrize("name, content", [
    ("notes.png", b"this is not an image\n"),
    ("empty.png", b""),
    ("header_only.jpg", b"\xff\xd8\xff\xe0"),
])
def test_garbage_files_raise_image_read_error(tmp_path, name, content):
  (tmp_path / name).write_bytes(content)
  with pytest.raises(images.ImageReadError, match=name):
    images.read_image(tmp_path / name)


def test_missing_file_raises_image_read_error(tmp_path):
  with pytest.raises(images.ImageReadError, match="absent.png"):
    images.read_image_any(tmp_path / "absent.png")
  assert issubclass(images.ImageReadError, ValueError)


def test_unwritable_path_raises_image_write_error(tmp_path):
  (tmp_path / "blocker").write_text("a file where a folder should be")
  path = tmp_path / "blocker" / "out.png"
  with pytest.raises(images.ImageWriteError, match="blocker"):
    images.write_image(path, gradient_rgb())


@pytest.mark.parametrize("name, array, message", [
    ("float.png", np.zeros((4, 4, 3), np.float32), "uint8 or uint16"),
    ("two.png", np.zeros((4, 4, 2), np.uint8), "C in"),
    ("deep.jpg", np.zeros((4, 4, 3), np.uint16), "PNG or TIFF"),
    ("alpha.jpg", np.zeros((4, 4, 4), np.uint8), "alpha"),
    ("alpha.bmp", np.zeros((4, 4, 4), np.uint8), "alpha"),
    ("image.gif", np.zeros((4, 4, 3), np.uint8), "extension"),
])
def test_bad_writes_raise_value_error_naming_the_path(tmp_path, name, array, message):
  with pytest.raises(ValueError, match=message) as error:
    images.write_image(tmp_path / name, array)
  assert name in str(error.value)
  assert not (tmp_path / name).exists()


def test_list_images(tmp_path):
  for name in ["b.png", "a.JPG", "c.webp", "d.tiff", "notes.txt", ".hidden.png", "._mac.png"]:
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "e.bmp").write_bytes(b"x")
  names = [os.path.relpath(p, tmp_path) for p in images.list_images(tmp_path)]
  assert names == ["a.JPG", "b.png", "c.webp", "d.tiff"]
  names = [os.path.relpath(p, tmp_path) for p in images.list_images(tmp_path, recursive=True)]
  assert names == ["a.JPG", "b.png", "c.webp", "d.tiff", os.path.join("sub", "e.bmp")]
  assert set(images.IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif",
                                          ".tiff"}


def test_list_images_errors_name_the_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    images.list_images(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.txt").write_text("no images here")
  with pytest.raises(ValueError, match="empty"):
    images.list_images(tmp_path / "empty")
  (tmp_path / "file.png").write_bytes(b"x")
  with pytest.raises(NotADirectoryError, match="file.png"):
    images.list_images(tmp_path / "file.png")


def test_folder_and_write_refusals_are_one_line_user_errors(tmp_path):
  """cli.run reports them as one line; their builtin bases above keep older callers working."""
  (tmp_path / "empty").mkdir()
  (tmp_path / "file.png").write_bytes(b"x")
  for folder, error in [("nowhere", images.ImageFolderNotFoundError),
                        ("empty", images.ImageFolderError),
                        ("file.png", images.NotAnImageFolderError)]:
    with pytest.raises(error, match=folder) as caught:
      images.list_images(tmp_path / folder)
    assert isinstance(caught.value, cli.UserError)
  with pytest.raises(images.ImageFormatError, match="extension") as caught:
    images.write_image(tmp_path / "image.gif", gradient_rgb())
  assert isinstance(caught.value, cli.UserError)
  with pytest.raises(cli.UserError, match="larger than JPEG"):
    images.check_size_fits(str(tmp_path / "huge.jpg"), 10, 70000)


def test_remote_style_paths_go_through_epath(tmp_path, monkeypatch):
  """gs:// paths are read, written and listed through etils.epath, never the local os calls."""
  import etils.epath
  local_root = tmp_path / "bucket"
  real_path = etils.epath.Path

  def fake_path(path):
    path = os.fspath(path)
    return real_path(path.replace("gs://bucket", os.fspath(local_root)))

  monkeypatch.setattr(images.epath, "Path", fake_path)
  picture = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
  images.write_image("gs://bucket/out/a.png", picture)
  assert (local_root / "out" / "a.png").exists()
  np.testing.assert_array_equal(images.read_image("gs://bucket/out/a.png"), picture)
  listed = images.list_images("gs://bucket/out")
  assert [os.path.basename(p) for p in listed] == ["a.png"]


@pytest.mark.parametrize("ext", ["tif", "bmp", "png"])
def test_large_local_writes_hold_no_encoded_copy(tmp_path, ext):
  """Local files are encoded straight into the file: no whole encoded copy in Python memory
  (TIFF and BMP encode to about the raw size, so a buffered copy would show as >= 3 MiB)."""
  import tracemalloc
  import tifffile  # pylint: disable=unused-import  # imported before tracing: its import allocates
  image = np.random.RandomState(0).randint(0, 256, (1024, 1024, 3), np.uint8)
  path = tmp_path / f"big.{ext}"
  tracemalloc.start()
  try:
    images.write_image(path, image)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < image.nbytes / 4, peak
  np.testing.assert_array_equal(images.read_image(path), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("float_type", [np.float32, np.float64])
def test_to_pixels_clips_and_rounds_half_to_even(dtype, float_type):
  """The one float -> integer rule: round(clip(x, 0, 1) * peak), halfway values to even, as
  `(x * 255.0).round()` in BasicSR and Real-ESRGAN (floor(y + 0.5) would give 3, 5, 7, 9)."""
  peak = np.iinfo(dtype).max
  halfway = np.array([2.5, 4.5, 6.5, 8.5]) / peak  # y * peak lands exactly on k + 0.5.
  values = np.concatenate([[-0.25, 0.0, 1.0, 1.5], halfway, [0.3 / peak, 0.7 / peak]])
  result = images.to_pixels(values.astype(float_type), dtype)
  assert result.dtype == dtype
  np.testing.assert_array_equal(result, [0, 0, peak, peak, 2, 4, 6, 8, 0, 1])
  with pytest.raises(ValueError, match="uint8 or uint16"):
    images.to_pixels(values, np.int32)
