"""Cut a folder of large training images into sub-images that the pipeline decodes cheaply.

  python -m esrgan_jax.prepare SRC OUT [--crop_size 480] [--step 240] [--thresh_size 0]
      [--format png|npy] [--num_workers N] [--scale 4 [--lr_dir LR]]

then train with config.data.dataset='prepared' and config.data.prepared_dir=OUT.

Without a decoded cache (data larger than memory) every training patch decodes the image it is
cut from: a 2K PNG for a 128-pixel patch. The sub-images of BasicSR's extract_subimages.py are
about 12x fewer pixels to decode per patch. The grid is the same as BasicSR's: along each axis,
windows of crop_size every `step` pixels, plus one window flush with the far border when more than
thresh_size pixels would be left out. Unlike extract_subimages.py, an image (or axis) shorter than
crop_size is kept whole as one sub-image instead of failing. Sub-images are named
'<stem>_s<NNN>.<ext>', numbered from 1 in row-major order, as BasicSR names them.

LR sub-images (OUT/lr/<name>, optional): with --lr_dir, LR files are matched to SRC's images as
dataset='folder' matches them; with --scale alone, each image is mod-cropped and its LR is MATLAB's
bicubic downscaling of the whole image (what DIV2K's LR files are, and the pixels dataset='folder'
makes on the fly). The grid is then laid on the LR image (crop_size / scale every step / scale
pixels) and the HR windows are scale times those. Without either, the pipeline makes each patch's
bicubic LR from the HR sub-image, which costs about half of the per-patch time of npy sub-images.

Windows overlapping by half (the defaults) hold each pixel about 4 times, so the set is about
3-4x the size of the source. Formats, with the patches/s per core that benchmarks/input_pipeline.py
measured on 2 shared cores against 10 for 2K PNGs decoded per patch in the same run:
  png  (default) lossless and compact; 70 (82 with --scale), 7-8x the 2K rate.
  npy  raw uint8 arrays, nothing to decode; 163 (308 with --scale), 16-30x; 1.3x (noise) to ~3x
       (photos) the disk of png.
TFRecord or ArrayRecord would hold the same encoded bytes (the same decoding cost) behind an index
or a sequential reader; plain files already give the random access the pipeline's sampler needs.

OUT/prepared.json lists the sub-images in order (the pipeline's image order) and how they were
made; it is written last, so an interrupted run leaves no set the pipeline would read, and a run
that fails or is stopped removes what it wrote (OUT was new or empty), so that the same command
works again. An
unreadable source image is skipped with a warning on stderr and counted in the final line; the
command fails (exit 1) only when SRC has no readable image at all.
"""

import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

from esrgan_jax import cli
from esrgan_jax.data import bicubic, datasets, prepared
from esrgan_jax.data.augment import mod_crop
from esrgan_jax.data.images import ImageReadError, list_images, read_image
from esrgan_jax.data.images import write_image

PROG = "esrgan_jax.prepare"
MANIFEST = prepared.MANIFEST
FORMATS = ("png", "npy")
MANIFEST_VERSION = 1
LR_FOLDER = "lr"


class PrepareError(cli.UserError, ValueError):
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


def _write(path: str, crop: np.ndarray, image_format: str) -> None:
  if image_format == "npy":
    write_array(path, crop)
  else:
    write_image(path, crop)


def _cut_one(path: str, lr_path: Optional[str], out_dir: str, crop_size: int, step: int,
             thresh_size: int, image_format: str,
             scale: int) -> Tuple[Optional[List[str]], Optional[str]]:
  """(names of the sub-images written, None) or (None, why the image was skipped)."""
  try:
    image = read_image(path)
    lr = None if lr_path is None else read_image(lr_path)
  except ImageReadError as e:
    return None, str(e)
  stem = os.path.splitext(os.path.basename(path))[0]
  if lr is None and scale:
    image = mod_crop(image, scale)
    if min(image.shape[:2]) < scale:
      return None, f"{path}: {image.shape[0]}x{image.shape[1]} is smaller than the scale {scale}"
    lr = bicubic.bicubic_lr_image(image, scale)
  if lr is None:
    hr_crops, lr_crops = sub_images(image, crop_size, step, thresh_size), None
  else:
    try:
      image = datasets.pair_images(image, lr, scale, path, lr_path)
    except datasets.PairSizeError as e:
      raise PrepareError(str(e)) from None
    lr_crop, lr_step, lr_thresh = crop_size // scale, step // scale, thresh_size // scale
    lr_crops = sub_images(lr, lr_crop, lr_step, lr_thresh)
    # The LR grid scaled up (the HR is exactly scale x the LR, so slices end at its border too):
    # each HR window is the one its LR window was made from.
    hr_crops = [image[top * scale:top * scale + crop_size, left * scale:left * scale + crop_size]
                for top in window_starts(lr.shape[0], lr_crop, lr_step, lr_thresh)
                for left in window_starts(lr.shape[1], lr_crop, lr_step, lr_thresh)]
  names = []
  for number, crop in enumerate(hr_crops, start=1):
    name = f"{stem}_s{number:03d}.{image_format}"
    _write(os.path.join(out_dir, name), crop, image_format)
    if lr_crops is not None:
      _write(os.path.join(out_dir, LR_FOLDER, name), lr_crops[number - 1], image_format)
    names.append(name)
  return names, None


def prepare(src_dir: str, out_dir: str, *, crop_size: int = 480, step: int = 240,
            thresh_size: int = 0, image_format: str = "png", num_workers: int = 0,
            lr_dir: Optional[str] = None, scale: Optional[int] = None, warn=None) -> dict:
  """Writes the sub-images of every image in `src_dir` (and of its LR files in `lr_dir`, x`scale`)
  and the manifest; returns the manifest.

  `warn(message)` reports each skipped unreadable image (default: a line on stderr).
  """
  if crop_size <= 0 or step <= 0 or thresh_size < 0:
    raise PrepareError(f"--crop_size ({crop_size}) and --step ({step}) must be positive and "
                       f"--thresh_size ({thresh_size}) non-negative")
  if num_workers < 0:
    raise PrepareError(f"--num_workers must be >= 0 (0: one per CPU, at most 16), got "
                       f"{num_workers}")
  if image_format not in FORMATS:
    raise PrepareError(f"--format must be one of {FORMATS}, got {image_format!r}")
  warn = warn or (lambda message: print(f"esrgan_jax: warning: {message}", file=sys.stderr))
  if lr_dir and scale is None:
    raise PrepareError("--lr_dir needs --scale, the SR factor of its images")
  if scale is not None and not (scale > 0 and crop_size % scale == 0 and step % scale == 0):
    raise PrepareError(f"--scale ({scale}) must be a positive divisor of --crop_size "
                       f"({crop_size}) and --step ({step})")
  paths = _source_paths(src_dir)
  lr_paths = [None] * len(paths)
  if lr_dir:
    try:
      lr_paths = datasets.match_lr_paths(paths, lr_dir, scale)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
      raise PrepareError(f"{e} (--lr_dir)") from None
  created = not os.path.exists(out_dir)
  _prepare_output(out_dir)
  try:
    return _cut_all(paths, lr_paths, out_dir, crop_size, step, thresh_size, image_format,
                    num_workers, src_dir, lr_dir, scale, warn)
  except BaseException:
    # OUT was new or empty: all in it is this run's, sub-images no manifest lists. Removed, so
    # that the same command works again once the cause is fixed (it refuses a non-empty OUT).
    _remove_contents(out_dir, created)
    raise


def _remove_contents(out_dir: str, remove_folder: bool) -> None:
  if remove_folder:
    shutil.rmtree(out_dir, ignore_errors=True)
    return
  for name in os.listdir(out_dir):
    path = os.path.join(out_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


def _cut_all(paths, lr_paths, out_dir, crop_size, step, thresh_size, image_format, num_workers,
             src_dir, lr_dir, scale, warn) -> dict:
  """prepare's work once SRC, LR and OUT are checked: the sub-images, then the manifest."""
  if scale:
    os.makedirs(os.path.join(out_dir, LR_FOLDER))
  workers = num_workers or min(16, os.cpu_count() or 1)
  files, skipped = [], []
  executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="prepare")
  try:
    # map keeps the source order, so the manifest's order is the sorted file names.
    results = executor.map(
        lambda p, q: _cut_one(p, q, out_dir, crop_size, step, thresh_size, image_format, scale),
        paths, lr_paths)
    for path, (names, why) in zip(paths, results):
      if names is None:
        warn(f"skipping unreadable image: {why}")
        skipped.append(path)
      else:
        files.extend(names)
  finally:
    # On an error or Ctrl-C, the images not yet started are not cut.
    executor.shutdown(wait=True, cancel_futures=True)
  if not files:
    raise PrepareError(f"{src_dir} (SRC): none of its {len(paths)} images is readable")
  manifest = {"version": MANIFEST_VERSION, "format": image_format, "crop_size": crop_size,
              "step": step, "thresh_size": thresh_size, "source": os.path.abspath(src_dir),
              "source_images": len(paths) - len(skipped), "skipped": skipped, "files": files}
  if scale:
    manifest.update(scale=scale, lr_source=os.path.abspath(lr_dir) if lr_dir else "bicubic",
                    lr_files=[f"{LR_FOLDER}/{name}" for name in files])
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
  parser.add_argument(*cli.flag("lr_dir"), metavar="LR",
                      help="LR images of SRC's, matched by name (default: the pipeline makes "
                      "bicubic LR from the HR)")
  parser.add_argument(*cli.flag("scale"), type=int,
                      help="also write LR sub-images for this SR factor: --lr_dir's, or MATLAB "
                      "bicubic of each whole image (then training does no resizing per patch)")
  args = parser.parse_args(argv)

  def run() -> str:
    manifest = prepare(args.src, args.out, crop_size=args.crop_size, step=args.step,
                       thresh_size=args.thresh_size, image_format=args.format,
                       num_workers=args.num_workers, lr_dir=args.lr_dir, scale=args.scale)
    skipped = len(manifest["skipped"])
    return (f"wrote {len(manifest['files'])} sub-images of {manifest['source_images']} images "
            f"to {args.out}" + (f" ({skipped} unreadable images skipped)" if skipped else ""))

  return cli.run(run)


if __name__ == "__main__":
  sys.exit(main())
