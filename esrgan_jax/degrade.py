"""Writes Real-ESRGAN-degraded LR images of a folder: what a real-world model trains on.

  python -m esrgan_jax.degrade IN_DIR OUT_DIR [--seed 0] [--scale 4] [--suffix ""]

Each image is degraded whole (no 400x400 crop as in training), cropped at the bottom/right to a
multiple of --scale, with Real-ESRGAN's second-order pipeline (configs/realesrgan_degradation.py)
as `degrade_batch(seed, step=0, image, slot=i)` for the i-th image of the sorted listing: the same
seed gives the same LR images, so the output can serve as a paired validation set. One program is
compiled per distinct image size. Outputs are PNG: OUT_DIR/NAME[_SUFFIX].png.
"""

import argparse
import functools
import os
import sys
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from configs.realesrgan_degradation import get_degradation_config
from esrgan_jax import cli
from esrgan_jax.data import output_names
from esrgan_jax.data.degradations import image_degrader
from esrgan_jax.data.images import ImageReadError, ImageWriteError, list_images, read_image, \
    write_image
from esrgan_jax.runtime import backends


def parse_args(argv):
  parser = cli.argument_parser("esrgan_jax.degrade", __doc__.split("\n\n")[0])
  parser.add_argument("in_dir", metavar="IN_DIR", help="folder of GT images")
  parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the LR PNGs (created)")
  parser.add_argument(*cli.flag("seed"), type=cli.seed, default=0,
                      help=f"random seed, {cli.SEED_RANGE[0]} to {cli.SEED_RANGE[1]} (default 0)")
  parser.add_argument(*cli.flag("scale"), type=int, default=4, choices=(1, 2, 4),
                      help="downscaling factor (default 4; 2 for the x2plus model)")
  parser.add_argument(*cli.flag("suffix"), default="",
                      help="appended to output names as NAME_SUFFIX.png (default none)")
  return parser.parse_args(argv)


@functools.cache
def _degrader(scale: int):
  return image_degrader(get_degradation_config(scale))


def degrade_image(image: np.ndarray, seed: int, slot: int, scale: int) -> np.ndarray:
  """uint8 HxWx3 GT -> uint8 (H // scale) x (W // scale) x 3 LR."""
  return _degrader(scale)(image, seed, slot)


def _check_out_dir(out_dir):
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise cli.UserError(f"{out_dir}: cannot create the output folder: {e.strerror or e}")
  if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK | os.X_OK):
    raise cli.UserError(f"{out_dir}: output folder is not writable")


def plan_outputs(paths: Sequence[str], out_dir: str, suffix: str) -> list[str]:
  """OUT_DIR/NAME[_SUFFIX].png of each input; refuses, before any work, an output that would
  replace an input (OUT_DIR = IN_DIR without --suffix: the GT images would be lost) or another
  output (a.jpg and a.png)."""
  outputs = []
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    outputs.append(os.path.join(out_dir, f"{stem}_{suffix}.png" if suffix else f"{stem}.png"))
  output_names.refuse_clashes(
      paths, outputs,
      replaces="{output}: would replace the input image {other}; choose another OUT_DIR or a "
               "--suffix",
      both="{other} and {path} would both be written to {output}; degrade them into different "
           "folders")
  return outputs


def degrade_folder(args: argparse.Namespace):
  """Writes every image's LR; a line saying so (exit 0), or EXIT_ERROR after naming each failure."""
  paths = list_images(args.in_dir)  # its errors are one-line cli.UserErrors
  outputs = plan_outputs(paths, args.out_dir, args.suffix)
  _check_out_dir(args.out_dir)
  # Each image takes seconds and each new size a compilation: say so before the first, then a
  # bar (on a terminal; disable=None keeps logs and pipes clean, as upscale's does).
  print(f"degrading {len(paths)} image(s) from {args.in_dir} (x{args.scale}, seed {args.seed}); "
        "each new image size compiles its program first", flush=True)
  failures = 0
  for slot, (path, out) in enumerate(tqdm(list(zip(paths, outputs)), unit="image", disable=None,
                                          file=sys.stderr)):
    try:
      image = read_image(path)
      if min(image.shape[:2]) < 2 * args.scale:
        raise ImageReadError(f"{path}: image is smaller than {2 * args.scale} pixels")
      write_image(out, degrade_image(image, args.seed, slot, args.scale))
    except (ImageReadError, ImageWriteError) as e:
      cli.error(str(e))  # Reported; the other images are still written.
      failures += 1
  if failures:
    return cli.EXIT_ERROR
  return (f"wrote {len(paths)} degraded image(s) to {args.out_dir} (x{args.scale}, "
          f"seed {args.seed})")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  backends.start_quietly()
  return cli.run(lambda: degrade_folder(args))


if __name__ == "__main__":
  sys.exit(main())
