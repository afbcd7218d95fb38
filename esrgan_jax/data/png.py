"""PNG files written strip by strip from an array, without a second full-size copy.

Pillow's writer would first copy an RGB array into its own 4-bytes-per-pixel image (4.1 GB for
a 32000x32000 output on top of the array's 3.1 GB) and `images.write_image` then holds the whole
encoded file in memory. Here rows are filtered and compressed a strip at a time and each strip's
compressed bytes go straight to the file, so the encoder needs a few strips of scratch memory.
8- and 16-bit gray, RGB and RGBA; the 'Up' filter on every row (smooth photos compress well
with it, and it needs only the row above). The file appears whole or not at all: it is written
under a temporary name and renamed.
"""

import os
import struct
import zlib

import numpy as np

from esrgan_jax.data import images

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # gray, RGB, RGBA
# Raw bytes filtered and compressed per step.
STRIP_BYTES = 1 << 24


def _chunk(tag: bytes, payload: bytes) -> bytes:
  checksum = zlib.crc32(payload, zlib.crc32(tag)) & 0xFFFFFFFF
  return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", checksum)


def _filtered_rows(image: np.ndarray, first: int, last: int) -> bytes:
  """Rows [first, last) as PNG scanlines: filter byte 2 ('Up'), then each byte minus the one
  above it (mod 256); the row above the first row of the image counts as zeros."""
  big_endian = image.dtype.newbyteorder(">")
  top = max(first - 1, 0)
  rows = image[top:last].astype(big_endian).reshape(last - top, -1).view(np.uint8)
  filtered = rows[first - top:].copy()
  if first > 0:
    filtered -= rows[:-1]
  else:
    filtered[1:] -= rows[:-1]
  with_filter = np.empty((filtered.shape[0], filtered.shape[1] + 1), np.uint8)
  with_filter[:, 0] = 2
  with_filter[:, 1:] = filtered
  return with_filter.tobytes()


def write_png(path: str, image: np.ndarray, level: int = 6) -> None:
  """Writes uint8/uint16 HxWxC (C in 1, 3, 4) pixels as a PNG file, strip by strip."""
  path = os.fspath(path)
  if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or \
      image.shape[-1] not in _COLOUR_TYPES:
    raise ValueError(f"{path}: expected uint8/uint16 HxWxC pixels with C in 1, 3, 4, got "
                     f"{image.dtype} {image.shape}")
  height, width, channels = image.shape
  header = struct.pack(">IIBBBBB", width, height, 8 * image.itemsize, _COLOUR_TYPES[channels],
                       0, 0, 0)
  rows_per_strip = max(1, STRIP_BYTES // (width * channels * image.itemsize + 1))
  with images.local_file_written_whole(path) as f:
    f.write(_SIGNATURE + _chunk(b"IHDR", header))
    compressor = zlib.compressobj(level)
    for first in range(0, height, rows_per_strip):
      data = compressor.compress(_filtered_rows(image, first, min(first + rows_per_strip, height)))
      if data:
        f.write(_chunk(b"IDAT", data))
    f.write(_chunk(b"IDAT", compressor.flush()) + _chunk(b"IEND", b""))
