"""Animated GIF, PNG and WebP files as lists of frames, for the upscaler.

An animation is read whole (every frame composited onto the canvas as a viewer shows it) and
written whole with the same frame durations and loop count; video files stream instead
(video.py).
"""

import os
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image, ImageSequence

from esrgan_jax.data import images as images_io
from esrgan_jax.data.images import ImageReadError

# Formats that hold an animation, with Pillow's names.
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".webp": "WEBP"}


class Animation(NamedTuple):
  frames: list  # HxWxC uint8, every frame composited onto the canvas as a viewer shows it
  durations: list  # milliseconds per frame
  loop: int  # 0: forever


def read_animation(path: str) -> Optional[Animation]:
  """The frames of an animated GIF/PNG/WebP, or None for a still image (or not an image)."""
  try:
    pil = Image.open(path)
  except Exception:  # Not an image Pillow knows: read_image_any reports it in one line.
    return None
  with pil:
    if getattr(pil, "n_frames", 1) < 2 or pil.format not in ANIMATION_FORMATS.values():
      return None
    try:
      frames, durations = [], []
      for frame in ImageSequence.Iterator(pil):
        frame.load()  # WebP sets a frame's duration only when it is decoded.
        durations.append(int(frame.info.get("duration", pil.info.get("duration", 100))))
        frames.append(np.asarray(frame.convert("RGBA")))
      loop = int(pil.info.get("loop", 0))
    except Exception as e:  # Decoders raise many types.
      raise ImageReadError(f"{path}: not a readable animation ({type(e).__name__}: {e})") \
          from None
  if all((frame[..., 3] == 255).all() for frame in frames):
    frames = [np.ascontiguousarray(frame[..., :3]) for frame in frames]
  return Animation(frames, durations, loop)


def write_animation(path: str, animation: Animation) -> None:
  ext = os.path.splitext(path)[1]
  options = {"quality": 95} if ext == ".webp" else {}
  images = [Image.fromarray(frame) for frame in animation.frames]
  with images_io.local_file_written_whole(path) as f:
    images[0].save(f, format=ANIMATION_FORMATS[ext], save_all=True, append_images=images[1:],
                   duration=animation.durations, loop=animation.loop, **options)
