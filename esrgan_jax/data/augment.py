"""Training transforms of BasicSR's paired pipeline: aligned random crop, flips and rot90; and
the GT-only crop-or-pad of Real-ESRGAN's dataset.

Mirrors `basicsr.data.transforms.paired_random_crop` and `augment`:
- the crop position is drawn on the LR grid, so the HR patch starts at exactly `scale` times the LR
  position and the two patches show the same content;
- horizontal flip (p = 0.5, `use_hflip`), vertical flip (p = 0.5) and a 90-degree rotation
  (p = 0.5) are applied in that order to both patches; the last two only with `use_rot`. Like
  BasicSR the "rotation" is a transpose of H and W, which together with the two flips reaches all
  eight symmetries of the square.

Every draw comes from the `numpy.random.Generator` passed in, so the pipeline decides what the
randomness is keyed on (see pipeline.py). Arrays are HxWxC, any dtype.
"""

from typing import Tuple

import numpy as np


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom and right so that H and W are multiples of `scale` (BasicSR's mod_crop)."""
  height, width = image.shape[:2]
  return image[:height - height % scale, :width - width % scale]


def pad_to_size(image: np.ndarray, min_height: int, min_width: int) -> np.ndarray:
  """Reflect-pads the bottom and right up to at least min_height x min_width.

  Reflection without repeating the edge pixel (cv2.BORDER_REFLECT_101, what Real-ESRGAN's
  datasets pad small images with) keeps textures continuous instead of adding flat bands.
  """
  pad_h = max(0, min_height - image.shape[0])
  pad_w = max(0, min_width - image.shape[1])
  if not pad_h and not pad_w:
    return image
  return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def random_crop_position(lr_height: int, lr_width: int, lr_patch_size: int,
                         rng: np.random.Generator) -> Tuple[int, int]:
  """Top-left corner (on the LR grid) of a uniformly drawn lr_patch_size square."""
  if lr_height < lr_patch_size or lr_width < lr_patch_size:
    raise ValueError(f"LR image {lr_height}x{lr_width} is smaller than the LR patch "
                     f"{lr_patch_size}x{lr_patch_size}")
  top = int(rng.integers(0, lr_height - lr_patch_size + 1))
  left = int(rng.integers(0, lr_width - lr_patch_size + 1))
  return top, left


def crop_or_pad(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """A size x size square of `image`: reflect-padded first when smaller, then cropped at a
  uniformly drawn position (Real-ESRGAN's dataset with crop_pad_size)."""
  image = pad_to_size(image, size, size)
  top, left = random_crop_position(image.shape[0], image.shape[1], size, rng)
  return image[top:top + size, left:left + size]


def paired_random_crop(hr: np.ndarray, lr: np.ndarray, hr_patch_size: int, scale: int,
                       rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """Aligned random patches (hr_patch, lr_patch) of an HR image and its LR image."""
  if hr_patch_size % scale:
    raise ValueError(f"HR patch size {hr_patch_size} is not a multiple of the scale {scale}")
  lr_patch_size = hr_patch_size // scale
  lr_h, lr_w = lr.shape[:2]
  if hr.shape[0] != lr_h * scale or hr.shape[1] != lr_w * scale:
    raise ValueError(f"HR image {hr.shape[0]}x{hr.shape[1]} is not {scale}x its LR image "
                     f"{lr_h}x{lr_w}")
  top, left = random_crop_position(lr_h, lr_w, lr_patch_size, rng)
  lr_patch = lr[top:top + lr_patch_size, left:left + lr_patch_size]
  hr_patch = hr[top * scale:(top + lr_patch_size) * scale,
                left * scale:(left + lr_patch_size) * scale]
  return hr_patch, lr_patch


def draw_flips(use_hflip: bool, use_rot: bool,
               rng: np.random.Generator) -> Tuple[bool, bool, bool]:
  """(hflip, vflip, transpose) drawn as BasicSR's `augment` does; all three are always drawn so
  that switching an option off does not shift the random stream of later draws."""
  hflip, vflip, transpose = (bool(x) for x in rng.random(3) < 0.5)
  return hflip and use_hflip, vflip and use_rot, transpose and use_rot


def apply_flips(image: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
  if hflip:
    image = image[:, ::-1]
  if vflip:
    image = image[::-1]
  if transpose:
    image = image.transpose(1, 0, 2)
  return image


def augment_pair(hr: np.ndarray, lr: np.ndarray, use_hflip: bool, use_rot: bool,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """The same random flips / rot90 applied to both patches."""
  flips = draw_flips(use_hflip, use_rot, rng)
  return apply_flips(hr, *flips), apply_flips(lr, *flips)
