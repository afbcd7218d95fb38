"""Cut a folder of large training images into sub-images that the pipeline decodes cheaply.

  python -m esrgan_jax.prepare SRC OUT [--crop_size 480] [--step 240] [--thresh_size 0]
      [--format png|npy] [--num_workers N]

then train with config.data.dataset='prepared' and config.data.prepared_dir=OUT.

Without a decoded cache (data larger than memory) every training patch decodes the image it is
cut from: a 2K PNG for a 128-pixel patch. The sub-images of BasicSR's extract_subimages.py are
about 12x fewer pixels to decode per patch. The grid is the same as BasicSR's: along each axis,
windows of crop_size every `step` pixels, plus one window flush with the far border when more than
thresh_size pixels would be left out. Unlike extract_subimages.py, an image (or axis) shorter than
crop_size is kept whole as one sub-image instead of failing. Sub-images are named
'<stem>_s<NNN>.<ext>', numbered from 1 in row-major order, as BasicSR names them.

Formats (measured by benchmarks/input_pipeline.py):
  png  lossless and about as large as the source PNGs; decoding is the remaining cost.
  npy  raw uint8 arrays: no decoding at all, ~2-3x the disk space of PNG.
TFRecord and ArrayRecord would hold the same PNG bytes (so the same decoding cost) and need a
reader index; plain files already give the random access the pipeline's sampler needs.

OUT/prepared.json lists the sub-images in order (the pipeline's image order) and how they were
made; it is written last, so an interrupted run leaves no set the pipeline would read. An
unreadable source image is skipped with a warning on stderr and counted in the final line; the
command fails (exit 1) only when SRC has no readable image at all.
"""

import concurrent.futures
import json
import os
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

from esrgan_jax import cli
from esrgan_jax.data import prepared
from esrgan_jax.data.images import ImageReadError, ImageWriteError, list_images, read_image
from esrgan_jax.data.images import write_image

PROG = "esrgan_jax.prepare"
MANIFEST = prepared.MANIFEST
FORMATS = ("png", "npy")
MANIFEST_VERSION = 1


class PrepareError(ValueError):
  """SRC or OUT cannot be used; the message names which and why."""


def window_starts(length: int, crop_size: int, step: int, thresh_size: int) -> List[int]:
  """Start offsets of the sub-image windows along an axis of `length` pixels (BasicSR's grid)."""
  if length <= crop_size:
    return [0]
  starts = list(range(0, length - crop_size + 1, step))
  if length - (starts[-1] + crop_size) > thresh_size:
    starts.append(length - crop_size)
  return starts


def sub_images(image: np.ndarray, crop_size: int, step: int,
               thresh_size: int) -> List[np.ndarray]:
  """The sub-images of `image` in row-major order, as views."""
  height, width = image.shape[:2]
  return [image[top:top + crop_size, left:left + crop_size]
          for top in window_starts(height, crop_size, step, thresh_size)
          for left in window_starts(width, crop_size, step, thresh_size)]


def write_array(path: str, array: np.ndarray) -> None:
  """np.save under a temporary name, then renamed: a file appears whole or not at all."""
  directory = os.path.dirname(path)
  handle, temporary = tempfile.mkstemp(dir=directory, suffix=".npy.partial")
  try:
    with os.fdopen(handle, "wb") as f:
      np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def _prepare_output(out_dir: str) -> None:
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise PrepareError(f"{out_dir} (OUT): exists and is not a directory")
    if os.listdir(out_dir):
      raise PrepareError(f"{out_dir} (OUT): directory is not empty; give a new or empty one")
  try:
    os.makedirs(out_dir, exist_ok=True)
    probe, probe_path = tempfile.mkstemp(dir=out_dir)
    os.close(probe)
    os.remove(probe_path)
  except OSError as e:
    raise PrepareError(f"{out_dir} (OUT): cannot write there ({e.strerror or e})") from None


def _source_paths(src_dir: str) -> List[str]:
  try:
    paths = list_images(src_dir)
  except (FileNotFoundError, NotADirectoryError, ValueError) as e:  # ValueError: no images
    raise PrepareError(f"{e} (SRC)") from None
  stems = {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in stems:
      raise PrepareError(f"{stems[stem]} and {path} (SRC) would give sub-images of the same names")
    stems[stem] = path
  return paths


def _cut_one(path: str, out_dir: str, crop_size: int, step: int, thresh_size: int,
             image_format: str) -> Tuple[Optional[List[str]], Optional[str]]:
  """(names of the sub-images written, None) or (None, why the image was skipped)."""
  try:
    image = read_image(path)
  except ImageReadError as e:
    return None, str(e)
  stem = os.path.splitext(os.path.basename(path))[0]
  names = []
  for number, crop in enumerate(sub_images(image, crop_size, step, thresh_size), start=1):
    name = f"{stem}_s{number:03d}.{image_format}"
    target = os.path.join(out_dir, name)
    if image_format == "npy":
      write_array(target, crop)
    else:
      write_image(target, crop)
    names.append(name)
  return names, None


def prepare(src_dir: str, out_dir: str, *, crop_size: int = 480, step: int = 240,
            thresh_size: int = 0, image_format: str = "png", num_workers: int = 0,
            warn=None) -> dict:
  """Writes the sub-images of every image in `src_dir` and the manifest; returns the manifest.

  `warn(message)` reports each skipped unreadable image (default: a line on stderr).
  """
  if crop_size <= 0 or step <= 0 or thresh_size < 0:
    raise PrepareError(f"--crop_size ({crop_size}) and --step ({step}) must be positive and "
                       f"--thresh_size ({thresh_size}) non-negative")
  if image_format not in FORMATS:
    raise PrepareError(f"--format must be one of {FORMATS}, got {image_format!r}")
  warn = warn or (lambda message: print(f"esrgan_jax: warning: {message}", file=sys.stderr))
  paths = _source_paths(src_dir)
  _prepare_output(out_dir)
  workers = num_workers or min(16, os.cpu_count() or 1)
  files, skipped = [], []
  with concurrent.futures.ThreadPoolExecutor(workers) as executor:
    # map keeps the source order, so the manifest's order is the sorted file names.
    results = executor.map(
        lambda p: _cut_one(p, out_dir, crop_size, step, thresh_size, image_format), paths)
    for path, (names, why) in zip(paths, results):
      if names is None:
        warn(f"skipping unreadable image: {why}")
        skipped.append(path)
      else:
        files.extend(names)
  if not files:
    raise PrepareError(f"{src_dir} (SRC): none of its {len(paths)} images is readable")
  manifest = {"version": MANIFEST_VERSION, "format": image_format, "crop_size": crop_size,
              "step": step, "thresh_size": thresh_size, "source": os.path.abspath(src_dir),
              "source_images": len(paths) - len(skipped), "skipped": skipped, "files": files}
  temporary = os.path.join(out_dir, MANIFEST + ".partial")
  with open(temporary, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(temporary, os.path.join(out_dir, MANIFEST))
  return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = cli.argument_parser(
      PROG, "Cut training images into sub-images (BasicSR's extract_subimages.py grid) for "
      "config.data.dataset='prepared'.")
  parser.add_argument("src", metavar="SRC", help="folder of training (HR) images")
  parser.add_argument("out", metavar="OUT", help="new or empty folder for the sub-images")
  parser.add_argument(*cli.flag("crop_size"), type=int, default=480,
                      help="sub-image side in pixels (default 480, BasicSR's)")
  parser.add_argument(*cli.flag("step"), type=int, default=240,
                      help="distance between sub-images (default 240: they overlap by half)")
  parser.add_argument(*cli.flag("thresh_size"), type=int, default=0,
                      help="add a window flush with the border when more than this many pixels "
                      "would be left out (default 0: cover every pixel)")
  parser.add_argument(*cli.flag("format"), choices=FORMATS, default="png",
                      help="png (lossless, compact) or npy (raw arrays, no decoding, larger)")
  parser.add_argument(*cli.flag("num_workers"), type=int, default=0,
                      help="threads reading and writing (default: CPUs, at most 16)")
  args = parser.parse_args(argv)

  def run() -> str:
    manifest = prepare(args.src, args.out, crop_size=args.crop_size, step=args.step,
                       thresh_size=args.thresh_size, image_format=args.format,
                       num_workers=args.num_workers)
    skipped = len(manifest["skipped"])
    return (f"wrote {len(manifest['files'])} sub-images of {manifest['source_images']} images "
            f"to {args.out}" + (f" ({skipped} unreadable images skipped)" if skipped else ""))

  return cli.run(run, (PrepareError, ImageWriteError, OSError))


if __name__ == "__main__":
  sys.exit(main())
