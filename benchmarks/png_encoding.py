"""PNG encoding: the project's encoder (esrgan_jax/data/png.py) against Pillow's, time and bytes.

  python -m benchmarks.png_encoding [--repeats 3] [--size 1000x1500] [--json FILE]

Test images, all H x W (--size), made from scikit-image's bundled photos:
- mosaic: real photos tiled at full resolution (no resampling), 8-bit RGB: texture;
- smooth: astronaut enlarged with MATLAB's bicubic resize, 8-bit RGB: like an SR output;
- smooth+noise: the same plus Gaussian noise of 2 levels (seeded);
- smooth 16-bit: astronaut's bicubic enlargement kept in float, then 16-bit RGB pixels.

Encoders, each into memory (io.BytesIO):
- png.write_png: the project's encoder, as images.write_image calls it;
- pillow: Image.fromarray + save(format="PNG", compress_level=6), as 8-bit PNGs were written
  before (8-bit only: Pillow cannot write 16-bit colour);
- up/default, up/filtered, paeth/filtered: benchmark-only variants, one filter on every row
  (png.py's `up_rows`, or this file's `paeth_rows`), strips as png.write_png cuts them, zlib
  level 6 with the default or the Z_FILTERED strategy. up/default is the setting of the former
  strip encoder of large outputs (and png.write_png's own for 16-bit pixels).

Each encoder's time is the median wall time of --repeats calls, taken in turn with the other
encoders' calls on the same image. Every file is decoded again and compared with the pixels: by
Pillow, except 16-bit colour, which Pillow truncates to 8 bits: TensorFlow's decode_png decodes
those (as images.read_image_any does).
"""

import argparse
import io
import json
import statistics
import struct
import time
import zlib

import numpy as np
import skimage.data
from PIL import Image

from esrgan_jax.data import bicubic, images, png

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
NOISE_LEVELS = 2.0  # standard deviation, in 8-bit levels
STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED}
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # the PNG colour types of gray, RGB, RGBA


def _size(text):
  try:
    height, width = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected HxW, e.g. 1000x1500, got {text!r}") from None
  if height < 1 or width < 1:
    raise argparse.ArgumentTypeError(f"expected a positive HxW, got {text!r}")
  return height, width


def mosaic(height, width):
  """The photos side by side in shelves as tall as the shortest photo, cropped at the edges."""
  photos = [getattr(skimage.data, name)() for name in PHOTOS]
  shelf = min(p.shape[0] for p in photos)
  out = np.empty((height, width, 3), np.uint8)
  for number, top in enumerate(range(0, height, shelf)):
    rows = min(shelf, height - top)
    left, index = 0, number  # each shelf starts one photo further on
    while left < width:
      photo = photos[index % len(photos)]
      cols = min(photo.shape[1], width - left)
      out[top:top + rows, left:left + cols] = photo[:rows, :cols]
      left, index = left + cols, index + 1
  return out


def test_images(height, width):
  """name -> HxWxC uint8/uint16 pixels."""
  astronaut = skimage.data.astronaut()
  smooth = bicubic.imresize(astronaut, output_shape=(height, width))
  noise = np.random.default_rng(0).normal(0.0, NOISE_LEVELS, smooth.shape)
  noisy = np.clip(np.rint(smooth + noise), 0, 255).astype(np.uint8)
  smooth16 = bicubic.imresize(astronaut / 255.0, output_shape=(height, width))
  return {"mosaic": mosaic(height, width), "smooth": smooth, "smooth+noise": noisy,
          "smooth 16-bit": images.to_pixels(smooth16, np.uint16)}


def paeth_rows(rows, above, bpp):
  """Benchmark-only: the scanlines of uint8 byte rows (n, L) with PNG's Paeth filter on each."""
  up = np.concatenate([above[None], rows[:-1]])
  left = np.zeros_like(rows)
  left[:, bpp:] = rows[:, :-bpp]
  up_left = np.zeros_like(rows)
  up_left[:, bpp:] = up[:, :-bpp]
  a, b, c = (x.astype(np.int16) for x in (left, up, up_left))
  guess = a + b - c
  to_a, to_b, to_c = np.abs(guess - a), np.abs(guess - b), np.abs(guess - c)
  predictor = np.where((to_a <= to_b) & (to_a <= to_c), left, np.where(to_b <= to_c, up, up_left))
  scanlines = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
  scanlines[:, 0] = 4  # Paeth's filter type
  np.subtract(rows, predictor, out=scanlines[:, 1:])
  return scanlines


def _chunk(tag, payload):
  checksum = zlib.crc32(payload, zlib.crc32(tag)) & 0xFFFFFFFF
  return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", checksum)


def write_single_filter(f, image, filter_fn, strategy):
  """Benchmark-only: png.write_png's file with `filter_fn` on every row and zlib `strategy`."""
  height, width, channels = image.shape
  bpp = channels * image.itemsize
  header = struct.pack(">IIBBBBB", width, height, 8 * image.itemsize, _COLOUR_TYPES[channels],
                       0, 0, 0)
  f.write(png.SIGNATURE + _chunk(b"IHDR", header))
  rows_per_strip = max(1, png.STRIP_BYTES // (png.SCRATCH_PER_BYTE * width * bpp))
  compressor = zlib.compressobj(png.LEVEL, zlib.DEFLATED, 15, 8, strategy)
  samples = image.astype(image.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
  above = np.zeros(width * bpp, np.uint8)
  for first in range(0, height, rows_per_strip):
    rows = samples[first:first + rows_per_strip]
    data = compressor.compress(filter_fn(rows, above, bpp))
    above = rows[-1]
    if data:
      f.write(_chunk(b"IDAT", data))
  f.write(_chunk(b"IDAT", compressor.flush()) + _chunk(b"IEND", b""))


def _write_pillow(f, image):
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      f, format="PNG", compress_level=png.LEVEL)


def encoders(image):
  """name -> fn(f, image) of the encoders that can write `image`."""
  found = {"png.write_png": png.write_png}
  if image.dtype == np.uint8:
    found["pillow"] = _write_pillow
  for name, filter_fn, strategy in (("up/default", png.up_rows, "default"),
                                    ("up/filtered", png.up_rows, "filtered"),
                                    ("paeth/filtered", paeth_rows, "filtered")):
    found[name] = (lambda f, x, fn=filter_fn, s=STRATEGIES[strategy]:
                   write_single_filter(f, x, fn, s))
  return found


def decode(data, image):
  """(pixels HxWxC, decoder name) of PNG `data` that should hold `image`'s pixels."""
  if image.dtype == np.uint16 and image.shape[-1] > 1:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  # heavy; 16-bit colour only
    return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy(), "tensorflow"
  with Image.open(io.BytesIO(data)) as pil:
    array = np.asarray(pil)
  return array.reshape(array.shape[:2] + (-1,)), "pillow"


def measure(name, image, repeats):
  """One row per encoder of `image`: median seconds, bytes, and whether it decodes back."""
  fns = encoders(image)
  times = {encoder: [] for encoder in fns}
  files = {}
  for _ in range(repeats):
    for encoder, fn in fns.items():
      buffer = io.BytesIO()
      start = time.perf_counter()
      fn(buffer, image)
      times[encoder].append(time.perf_counter() - start)
      files[encoder] = buffer.getvalue()
  rows = []
  for encoder, data in files.items():
    decoded, decoder = decode(data, image)
    same = decoded.dtype == image.dtype and np.array_equal(decoded, image)
    rows.append(dict(image=name, shape=list(image.shape), dtype=str(image.dtype), encoder=encoder,
                     seconds=statistics.median(times[encoder]), bytes=len(data),
                     raw_bytes=image.nbytes, decoder=decoder, same_pixels=bool(same)))
  return rows


def print_table(rows):
  print(f"{'image':<14} {'encoder':<15} {'median s':>9} {'bytes':>11} {'vs write_png':>13}  "
        f"decodes to the same pixels")
  reference = {r["image"]: r["bytes"] for r in rows if r["encoder"] == "png.write_png"}
  for r in rows:
    ratio = r["bytes"] / reference[r["image"]] - 1
    check = f"yes ({r['decoder']})" if r["same_pixels"] else f"FAILED ({r['decoder']})"
    print(f"{r['image']:<14} {r['encoder']:<15} {r['seconds']:>9.3f} {r['bytes']:>11,} "
          f"{ratio:>+12.1%}  {check}")


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.png_encoding",
      description="Times and sizes of PNG files written by esrgan_jax/data/png.py, Pillow and "
                  "single-filter variants, on test images made from scikit-image's photos.")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed calls per encoder and image; the median is reported")
  parser.add_argument("--size", type=_size, default=(1000, 1500), metavar="HxW",
                      help="height x width of every test image (default 1000x1500)")
  parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error("--repeats must be at least 1")
  height, width = args.size
  print(f"PNG encoding of {height}x{width} images, median of {args.repeats} call(s), zlib level "
        f"{png.LEVEL}", flush=True)
  rows = []
  for name, image in test_images(height, width).items():
    rows += measure(name, image, args.repeats)
  print_table(rows)
  failed = [f"{r['image']} / {r['encoder']}" for r in rows if not r["same_pixels"]]
  for what in failed:
    print(f"FAILURE: {what} does not decode to the pixels it was given")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)
  return 1 if failed else 0


if __name__ == "__main__":
  raise SystemExit(main())
