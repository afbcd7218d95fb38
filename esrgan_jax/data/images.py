"""Reading and writing image files, with every pixel-format conversion made on purpose.

Two readers, for two users:
- `read_image` gives what training and evaluation want: uint8 HxWx3 RGB. Grayscale is copied to
  three channels, palette images are expanded, alpha is dropped (SR models here see RGB only; an
  alpha channel carries no texture to learn), and 16-bit images become 8-bit by round(v / 257),
  the exact inverse of the usual 8 -> 16 bit scaling v * 257.
- `read_image_any` gives the file's own data for the upscaler, which must hand back what it got:
  uint8 or uint16, HxWxC with C = 1 (gray), 3 (RGB) or 4 (RGBA; gray+alpha becomes RGBA).

Both apply the EXIF orientation, as cv2.imread (BasicSR's reader) and image viewers do.

Pillow decodes everything except 16-bit *colour*: it silently truncates 16-bit RGB(A) PNG and TIFF
to 8 bits. Those files go to TensorFlow's PNG decoder and tifffile instead, imported only then.
Every PNG is encoded by png.py (Pillow cannot write 16-bit colour, and would copy a large RGB
output into its own 4-bytes-per-pixel image first); colour TIFFs by tifffile.

Float images become pixels by one rule, `to_pixels`, wherever this project makes them: SR
outputs for evaluation, upscaled files, comparison pictures.

Failures name the file: `ImageReadError` for a missing, unreadable, corrupt or truncated file,
`ImageWriteError` when a file cannot be written, `ImageFormatError` for pixels its format cannot
hold, `ImageFolderNotFoundError` / `NotAnImageFolderError` / `ImageFolderError` for a folder that
is missing, a file, or without images; never a decoder's stack trace. All are cli.UserErrors that
keep the builtin base (ValueError, FileNotFoundError, ...) callers catch them by.
"""

import contextlib
import io
import os
import warnings
from typing import List, NamedTuple

import numpy as np
from etils import epath
from PIL import Image, ImageOps

from esrgan_jax import cli
from esrgan_jax.data import png

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Pillow's format names for the extensions we write.
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
# The largest side each format's encoder takes (libjpeg's JPEG_MAX_DIMENSION, libwebp's
# WEBP_MAX_DIMENSION); PNG and TIFF have no practical limit.
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}
# Modes that Pillow converts to RGB / RGBA without losing anything we keep.
_TO_RGB_MODES = ("RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_TO_RGBA_MODES = ("LA", "La", "PA", "RGBa")

# Pillow's decompression-bomb guard prints its own multi-line warning past 89 M pixels; where a
# size matters the commands say so in their own words (upscale: --max_pixels, from the header).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(cli.UserError, ValueError):
  """An image file is missing, unreadable, corrupt, truncated or in an unsupported format."""


class ImageWriteError(cli.UserError, OSError):
  """An image file could not be written (no permission, a file where a folder should be, ...)."""


class ImageFormatError(cli.UserError, ValueError):
  """Pixels the file's format cannot hold (16-bit JPEG, alpha in BMP, too large, ...)."""


class ImageFolderError(cli.UserError, ValueError):
  """A folder of images holds no image files."""


class ImageFolderNotFoundError(cli.UserError, FileNotFoundError):
  """A folder of images does not exist."""


class NotAnImageFolderError(cli.UserError, NotADirectoryError):
  """A file was given where a folder of images was expected."""


def to_pixels(image: np.ndarray, dtype=np.uint8) -> np.ndarray:
  """Float pixels in [0, 1] -> uint8 (or uint16): round(clip(x, 0, 1) * peak), peak = 255 (65535).

  The one float-to-integer rule of this project. Halfway values round to even (np.rint), as
  BasicSR's tensor2img and Real-ESRGAN's inference do with `(x * 255.0).round()`: 2.5 -> 2,
  3.5 -> 4. The arithmetic stays in the input's float type (float32 for network outputs).
  """
  dtype = np.dtype(dtype)
  if dtype not in (np.uint8, np.uint16):
    raise ValueError(f"to_pixels: expected uint8 or uint16, got {dtype}")
  scaled = np.clip(image, 0.0, 1.0) * float(np.iinfo(dtype).max)
  return np.rint(scaled, out=scaled).astype(dtype)


def read_image(path) -> np.ndarray:
  """The image at `path` as uint8 HxWx3 RGB (see the module docstring for the conversions)."""
  image = read_image_any(path)
  if image.dtype == np.uint16:
    # Integer form of round(v / 257); v / 257 never lies exactly halfway between two integers.
    image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
  if image.shape[-1] == 4:
    image = image[..., :3]
  elif image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return np.ascontiguousarray(image)


def read_image_any(path) -> np.ndarray:
  """The image at `path` as stored: uint8 or uint16, HxWxC with C in (1, 3, 4)."""
  path = os.fspath(path)
  try:
    if _is_remote(path):
      data = epath.Path(path).read_bytes()
    else:
      with open(path, "rb") as f:
        data = f.read()
  except OSError as e:
    raise ImageReadError(f"{path}: cannot read file: {e.strerror or e}") from None
  if not data:
    raise ImageReadError(f"{path}: file is empty")
  try:
    image = _decode(data)
  except ImageReadError as e:
    raise ImageReadError(f"{path}: {e}") from None
  except Image.UnidentifiedImageError:  # its message names only an in-memory buffer
    raise ImageReadError(f"{path}: not a readable image (no format Pillow knows: damaged, or "
                         "not an image)") from None
  except Exception as e:  # Decoders raise many types (OSError, SyntaxError, zlib.error, ...).
    raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
  return image


class ImageHeader(NamedTuple):
  """What read_image_any will return, known from the file's header: no pixels decoded."""
  height: int
  width: int
  channels: int
  itemsize: int


def read_header(path) -> ImageHeader:
  """The size and pixel format of the image at `path` (EXIF orientation applied), without
  decoding it: for callers that refuse an image too large before reading it."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      start = f.read(26)
  except OSError as e:
    raise ImageReadError(f"{path}: cannot read file: {e.strerror or e}") from None
  if not start:
    raise ImageReadError(f"{path}: file is empty")
  try:
    with Image.open(path) as pil:
      width, height = pil.size
      if pil.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated a quarter turn
        width, height = height, width
      mode = pil.mode
      if _is_16bit_colour_png(start) or pil.format == "TIFF" and _is_16bit_colour_tiff(pil):
        return ImageHeader(height, width, 4 if "A" in mode else 3, 2)
      transparent = mode == "P" and "transparency" in pil.info
  except Image.UnidentifiedImageError:
    raise ImageReadError(f"{path}: not a readable image (no format Pillow knows: damaged, or "
                         "not an image)") from None
  except Exception as e:  # Decoders raise many types.
    raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
  if mode in ("1", "L") or mode.startswith("I"):
    return ImageHeader(height, width, 1, 1 if mode in ("1", "L") else 2)
  if mode in _TO_RGBA_MODES or mode == "RGBA" or transparent:
    return ImageHeader(height, width, 4, 1)
  return ImageHeader(height, width, 3, 1)


@contextlib.contextmanager
def no_pillow_pixel_limit():
  """Within it Pillow opens images of any size: for a caller with its own limit, stated in its
  own flag (upscale's --max_pixels), which Pillow's 179 M pixel refusal would otherwise cut."""
  previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    yield
  finally:
    Image.MAX_IMAGE_PIXELS = previous


def _decode(data: bytes) -> np.ndarray:
  if _is_16bit_colour_png(data):
    return _decode_png_with_tensorflow(data)
  with Image.open(io.BytesIO(data)) as pil:
    if pil.format == "TIFF" and _is_16bit_colour_tiff(pil):
      return _decode_tiff_with_tifffile(data)
    pil.load()  # Decode now, so that truncation is reported here rather than later.
    pil = ImageOps.exif_transpose(pil)
    return _pil_to_array(pil)


def _pil_to_array(pil: Image.Image) -> np.ndarray:
  """The array of a decoded Pillow image, HxWxC uint8 or uint16."""
  mode = pil.mode
  if mode == "1":
    pil, mode = pil.convert("L"), "L"
  elif mode == "P":
    mode = "RGBA" if pil.has_transparency_data else "RGB"
    pil = pil.convert(mode)
  elif mode in _TO_RGB_MODES:
    pil, mode = pil.convert("RGB"), "RGB"
  elif mode in _TO_RGBA_MODES:
    pil, mode = pil.convert("RGBA"), "RGBA"
  array = np.asarray(pil)
  if mode in ("L", "RGB", "RGBA"):
    return array.reshape(array.shape[:2] + (-1,))
  if mode.startswith("I;16"):
    return array.astype(np.uint16)[..., None]  # Also makes big-endian data native.
  if mode == "I":
    # Pillow uses 32-bit "I" for some 16-bit files; keep it when the values fit in 16 bits.
    if array.size and (array.min() < 0 or array.max() > 65535):
      raise ImageReadError("32-bit integer pixels outside [0, 65535] are not supported")
    return array.astype(np.uint16)[..., None]
  raise ImageReadError(f"unsupported pixel mode {mode!r} (expected 8- or 16-bit gray or colour)")


def _is_16bit_colour_png(data: bytes) -> bool:
  # IHDR is always the first chunk: bit depth at byte 24, colour type at byte 25.
  if not data.startswith(png.SIGNATURE) or len(data) < 26 or data[12:16] != b"IHDR":
    return False
  bit_depth, colour_type = data[24], data[25]
  return bit_depth == 16 and colour_type in (2, 4, 6)  # RGB, gray+alpha, RGBA.


def _decode_png_with_tensorflow(data: bytes) -> np.ndarray:
  import tensorflow as tf  # Heavy; only 16-bit colour PNGs need it.
  try:
    array = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
  except tf.errors.InvalidArgumentError:
    raise ImageReadError("corrupt or truncated 16-bit PNG") from None
  if array.shape[-1] == 2:  # Gray + alpha -> RGBA, so that callers see 1, 3 or 4 channels.
    array = np.concatenate([np.repeat(array[..., :1], 3, axis=-1), array[..., 1:]], axis=-1)
  return array


def _is_16bit_colour_tiff(pil: Image.Image) -> bool:
  bits = pil.tag_v2.get(258)  # BitsPerSample, one value per channel.
  bits = bits if isinstance(bits, tuple) else (bits,)
  return len(bits) in (3, 4) and 16 in bits


def _decode_tiff_with_tifffile(data: bytes) -> np.ndarray:
  import tifffile  # Installed with scikit-image; Pillow would cut these to 8 bits.
  array = tifffile.imread(io.BytesIO(data), key=0)
  if array.dtype != np.uint16 or array.ndim != 3 or array.shape[-1] not in (3, 4):
    raise ImageReadError(f"unsupported 16-bit TIFF layout: shape {array.shape}, {array.dtype}")
  return array


def write_image(path, image: np.ndarray, quality: int = 95) -> None:
  """Writes uint8 or uint16 pixels, HxW or HxWxC with C in (1, 3, 4), creating parent folders.

  The format follows the extension. 16-bit pixels need PNG or TIFF; alpha needs PNG, TIFF or
  WebP. `quality` applies to JPEG (written 4:4:4, without chroma subsampling) and WebP. The file
  appears whole or not at all: it is written under a temporary name and then renamed, so an
  interrupted run never leaves half an image behind. Local files are encoded straight into the
  file; only Pillow's formats (JPEG, WebP, BMP, gray TIFF) make one converted copy of the pixels.
  """
  path = os.fspath(path)
  image = _check_image_to_write(path, np.asarray(image))
  extension = os.path.splitext(path)[1].lower()
  if extension not in _WRITE_FORMATS:
    raise ImageFormatError(
        f"{path}: unsupported extension {extension!r}; use one of {IMAGE_EXTENSIONS}")
  image_format = _WRITE_FORMATS[extension]
  check_size_fits(path, image.shape[0], image.shape[1])
  channels = image.shape[-1]
  if image.dtype == np.uint16 and image_format not in ("PNG", "TIFF"):
    raise ImageFormatError(f"{path}: 16-bit pixels can only be written as PNG or TIFF")
  if channels == 4 and image_format in ("JPEG", "BMP"):
    # Pillow cannot write alpha to JPEG, and reads a 32-bit BMP back as RGB.
    raise ImageFormatError(
        f"{path}: {image_format} cannot keep an alpha channel; use PNG or drop it")

  if _is_remote(path):
    buffer = io.BytesIO()
    _encode(image, image_format, quality, buffer)
    _write_remote(path, buffer.getvalue())
    return
  # Encoded straight into the file: no second copy of a large output in memory.
  with local_file_written_whole(path) as f:
    _encode(image, image_format, quality, f)


def check_size_fits(path: str, height: int, width: int) -> None:
  """ImageFormatError naming `path` when its format cannot hold a height x width image
  (callers that make large outputs ask before the work, not after it)."""
  image_format = _WRITE_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())
  limit = MAX_SIDE.get(image_format)
  if limit is not None and max(height, width) > limit:
    raise ImageFormatError(f"{path}: {width}x{height} is larger than {image_format} can hold "
                           f"({limit} pixels a side); write PNG or TIFF instead (--ext png)")


def _encode(image: np.ndarray, image_format: str, quality: int, f) -> None:
  channels = image.shape[-1]
  if image_format == "PNG":
    png.write_png(f, image)
  elif image_format == "TIFF" and channels > 1:
    # tifffile writes the array as it is (Pillow has no 16-bit colour mode, and for 8-bit RGB it
    # would first copy the pixels into its own 4-bytes-per-pixel buffer).
    import tifffile
    tifffile.imwrite(f, image, photometric="rgb" if channels > 1 else "minisblack")
  else:
    # Pillow holds RGB as 4 bytes per pixel: one converted copy, 4/3 of a uint8 RGB output.
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    options = {"quality": quality} if image_format in ("JPEG", "WEBP") else {}
    if image_format == "JPEG":
      options["subsampling"] = 0  # 4:4:4: keep full-resolution colour in super-resolved output.
    pil.save(f, format=image_format, **options)


def _check_image_to_write(path: str, image: np.ndarray) -> np.ndarray:
  if image.dtype not in (np.uint8, np.uint16):
    raise ImageFormatError(f"{path}: can only write uint8 or uint16 pixels, got {image.dtype}; "
                           "round and clip float images first")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
    raise ImageFormatError(f"{path}: expected an HxW or HxWxC image with C in (1, 3, 4), "
                           f"got shape {image.shape}")
  return np.ascontiguousarray(image)


def _is_remote(path: str) -> bool:
  """gs:// and other URL-style paths, which go through etils.epath (tf.io.gfile)."""
  return "://" in path


def _write_remote(path: str, data: bytes) -> None:
  """Object stores publish an object whole when its upload completes: no temporary name."""
  try:
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    epath.Path(path).write_bytes(data)
  except Exception as e:  # gfile raises its own error types
    raise ImageWriteError(f"{path}: cannot write image: {e}") from None


@contextlib.contextmanager
def local_file_written_whole(path: str):
  """Yields a binary file that appears at `path` only once written whole (temporary + rename).

  Any failure, Ctrl-C included, removes the temporary file; an OSError becomes one
  ImageWriteError line naming `path`.
  """
  temporary = f"{path}.tmp-{os.getpid()}"
  try:
    parent = os.path.dirname(path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    with open(temporary, "wb") as f:
      yield f
    os.replace(temporary, path)
  except BaseException as e:
    if os.path.exists(temporary):
      os.remove(temporary)
    if isinstance(e, OSError):
      raise ImageWriteError(f"{path}: cannot write image: {e.strerror or e}") from None
    raise


def list_images(directory, recursive: bool = False) -> List[str]:
  """Sorted paths of the image files in `directory` (extensions in IMAGE_EXTENSIONS, any case).

  Hidden files are skipped: macOS leaves '._name.png' metadata files beside real images.
  """
  directory = os.fspath(directory)
  if _is_remote(directory):
    return _list_remote_images(directory, recursive)
  if not os.path.exists(directory):
    raise ImageFolderNotFoundError(f"{directory}: image directory does not exist")
  if not os.path.isdir(directory):
    raise NotAnImageFolderError(f"{directory}: expected a directory of images, found a file")
  paths = []
  for root, folders, files in os.walk(directory):
    folders[:] = [name for name in folders if not name.startswith(".")]
    paths.extend(os.path.join(root, name) for name in files
                 if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS))
    if not recursive:
      break
  if not paths:
    raise ImageFolderError(f"{directory}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
  return sorted(paths)


def _list_remote_images(directory: str, recursive: bool) -> List[str]:
  root = epath.Path(directory)
  if not root.exists():
    raise ImageFolderNotFoundError(f"{directory}: image directory does not exist")
  candidates = root.rglob("*") if recursive else root.iterdir()
  paths = sorted(os.fspath(p) for p in candidates
                 if not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise ImageFolderError(f"{directory}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
  return paths
