"""Image files (stills and animations) through one Upscaler, each written as soon as it is done.

Every output keeps its input's pixel format; a format that cannot hold it (alpha, 16-bit, a still
GIF) is written as PNG instead (`writable_path`). Before an image is decoded its output size is
checked from the header (`--max_pixels`, output_limits.py), with `--tile 0` also the memory of
its whole-image network call (whole_image.py), and an output its format cannot hold is refused:
each in one line, the image counted as failed and the others still upscaled.
"""

import math
import os
from typing import NamedTuple, Optional

import numpy as np

from esrgan_jax import cli
from esrgan_jax.data import images as images_io
from esrgan_jax.data.images import ImageReadError, ImageWriteError, read_image_any, write_image
from esrgan_jax.inference import output_limits, whole_image
from esrgan_jax.inference.animation import (ANIMATION_FORMATS, Animation, read_animation,
                                            write_animation)
from esrgan_jax.inference.upscaler import BATCH_OUTPUT_BYTES, Upscaler

# Extensions that can hold 16-bit pixels and an alpha channel; others fall back to PNG for them.
HIGH_DEPTH_EXTENSIONS = (".png", ".tif", ".tiff")
ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp", ".bmp")


def writable_path(path: str, image: np.ndarray) -> str:
  """`path`, with a .png extension if its format cannot store `image` (alpha, 16-bit, GIF)."""
  stem, ext = os.path.splitext(path)
  if ext == ".gif":  # A still GIF: written as PNG, which keeps every colour.
    return stem + ".png"
  if image.dtype == np.uint16 and ext not in HIGH_DEPTH_EXTENSIONS:
    return stem + ".png"
  if image.shape[-1] == 4 and ext not in ALPHA_EXTENSIONS:
    return stem + ".png"
  return path


def write_output(path: str, image: np.ndarray) -> None:
  write_image(writable_path(path, image), image)


def _sizes(paths) -> list:
  """(height, width) of each image from its header, None where it cannot be read."""
  sizes = []
  for path in paths:
    try:
      sizes.append(images_io.read_header(path)[:2])
    except ImageReadError:
      sizes.append(None)
  return sizes


def _check_memory(path, header, same_size: int, upscaler: Upscaler, batch_size: int,
                  memory: whole_image.CallMemory, tile_pad: int) -> None:
  """whole_image.check of one image (--tile 0): its call holds at most `same_size` windows (the
  images of its size and its own frames), as many as BATCH_OUTPUT_BYTES of outputs allows."""
  nbytes = math.prod(upscaler.output_size(*header[:2])) * header.channels * header.itemsize
  batch = whole_image.image_batch(batch_size, nbytes, BATCH_OUTPUT_BYTES, same_size)
  whole_image.check(path, "image", memory, batch, *header[:2], tile_pad)


class _Pending(NamedTuple):
  out: str
  frames: list
  animation: Optional[Animation]


def upscale_images(args, upscaler: Upscaler, paths, outputs, images_bar, memory=None,
                   tile_pad: int = 0, read_image=read_image_any) -> tuple[int, int]:
  """Upscales and writes every image; returns how many were written and how many failed (each
  reported in one line). `memory()`: the network's whole_image.CallMemory, with --tile 0;
  `read_image`: a still image's pixels (the command's, which tests may replace)."""
  failures, written, pending = 0, 0, {}
  sizes = _sizes(paths) if memory is not None else []

  def write_finished():
    nonlocal failures, written
    for (index, frame), result in upscaler.finished():
      entry = pending[index]
      entry.frames[frame] = result
      if any(f is None for f in entry.frames):
        continue
      del pending[index]
      try:
        if entry.animation is None:
          write_output(entry.out, entry.frames[0])
        else:
          write_animation(entry.out, entry.animation._replace(frames=entry.frames))
        written += 1
      except (ImageWriteError, ValueError) as error:
        cli.error(str(error))
        failures += 1
      images_bar.update(1)

  for index, (path, out) in enumerate(zip(paths, outputs)):
    images_bar.set_postfix_str(os.path.basename(path))
    try:
      header = output_limits.check_file(path, upscaler.output_size, args.max_pixels)
      animation = read_animation(path)
      if memory is not None:
        frame_count = len(animation.frames) if animation else 1
        _check_memory(path, header, sizes.count(header[:2]) - 1 + frame_count, upscaler,
                      args.batch_size, memory(), tile_pad)
      if animation is not None and os.path.splitext(out)[1] not in ANIMATION_FORMATS:
        raise ImageReadError(f"{path}: an animation of {len(animation.frames)} frames cannot "
                             f"be written as {os.path.splitext(out)[1]}; use --ext gif, png or "
                             "webp")
      frames = animation.frames if animation else [read_image(path)]
      # Before the work: an output its format cannot hold would be lost only at the end.
      out_height, out_width = upscaler.output_size(*frames[0].shape[:2])
      images_io.check_size_fits(writable_path(out, frames[0]), out_height, out_width)
    except (ImageReadError, ValueError) as error:
      cli.error(str(error))
      failures += 1
      images_bar.update(1)
      continue
    pending[index] = _Pending(out, [None] * len(frames), animation)
    for frame, pixels in enumerate(frames):
      upscaler.submit(pixels, (index, frame))
      write_finished()
  upscaler.flush()
  write_finished()
  return written, failures
