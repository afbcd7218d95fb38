"""A picture for humans: LR | bicubic | SR | HR side by side, the way SR papers show results.

The LR input is enlarged with nearest neighbours so that its real pixels stay visible; the other
three panels already have the HR size. Optionally all four show the same centre crop, where
textures can be told apart at 1:1 zoom. With `labels`, a caption bar above the panels names each
one (Pillow's default font, which ships with Pillow), leaving the panels' pixels untouched.
"""

from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from esrgan_jax.data import images

SEPARATOR_VALUE = 255  # White bars between the panels.
PANEL_NAMES = ("lr", "bicubic", "sr", "hr")
CAPTION_BACKGROUND = 255
CAPTION_TEXT = 0
# Caption font size in pixels: a fraction of the panel width, within readable bounds.
MIN_FONT_SIZE, MAX_FONT_SIZE, PANEL_WIDTHS_PER_FONT_SIZE = 11, 40, 14


def _to_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
  """uint8 / uint16 / float in [0, 1] pixels, HxW or HxWxC with C in 1, 3, 4 -> uint8 HxWx3."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"comparison_strip: {name} must be HxW or HxWxC with C in 1, 3, 4, "
                     f"got shape {image.shape}")
  if image.dtype == np.uint8:
    pixels = image
  elif image.dtype == np.uint16:
    pixels = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
  elif np.issubdtype(image.dtype, np.floating):
    pixels = images.to_pixels(image)
  else:
    raise ValueError(f"comparison_strip: {name} has unsupported dtype {image.dtype}")
  pixels = pixels[..., :3]  # An alpha channel is not shown.
  return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _nearest_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  # Output pixel i shows input pixel floor(i * in / out): whole blocks for integer factors.
  rows = np.arange(height) * image.shape[0] // height
  cols = np.arange(width) * image.shape[1] // width
  return image[rows[:, None], cols[None, :]]


def _centre_crop(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
  height, width = min(crop[0], image.shape[0]), min(crop[1], image.shape[1])
  top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
  return image[top:top + height, left:left + width]


def _font(panel_width: int):
  size = int(np.clip(panel_width // PANEL_WIDTHS_PER_FONT_SIZE, MIN_FONT_SIZE, MAX_FONT_SIZE))
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, ImportError, OSError):  # a Pillow without FreeType: the fixed bitmap font
    return ImageFont.load_default()


def caption_bar(labels: Sequence[str], panel_width: int, separator: int) -> np.ndarray:
  """A white uint8 bar with one black label left-aligned over each panel, clipped to it."""
  font = _font(panel_width)
  top, bottom = font.getbbox("Ag|")[1::2]
  margin = max(2, (bottom - top) // 4)
  height = bottom - top + 2 * margin
  pieces = []
  for k, label in enumerate(labels):
    if k:
      pieces.append(np.full((height, separator, 3), SEPARATOR_VALUE, np.uint8))
    canvas = Image.new("RGB", (panel_width, height), (CAPTION_BACKGROUND,) * 3)
    ImageDraw.Draw(canvas).text((margin, margin - top), label, fill=(CAPTION_TEXT,) * 3,
                                font=font)
    pieces.append(np.asarray(canvas, np.uint8))
  return np.concatenate(pieces, axis=1)


def comparison_strip(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray,
                     crop: Optional[Union[int, Sequence[int]]] = None,
                     separator: int = 4,
                     labels: Optional[Sequence[str]] = None) -> np.ndarray:
  """LR (nearest-upscaled to HR size) | bicubic | SR | HR as one uint8 HxWx3 image.

  Args:
    lr, bicubic, sr, hr: uint8, uint16 or float ([0, 1]) images, HxW or HxWxC; bicubic and sr of
      the HR size. Grayscale is shown as gray, alpha is dropped.
    crop: None for whole images, or the (height, width) (one int: a square) of the centre crop
      shown of every panel, clipped to the image size.
    separator: width in pixels of the white bars between panels.
    labels: None, or four captions (e.g. "LR", "bicubic PSNR-Y 29.99 dB", "SR PSNR-Y 30.63 dB",
      "HR") drawn
      in a bar above the panels, which stay pixel for pixel as without labels.
  """
  if labels is not None and len(labels) != len(PANEL_NAMES):
    raise ValueError(f"comparison_strip: labels must name the {len(PANEL_NAMES)} panels, got "
                     f"{len(labels)}")
  panels = [_to_rgb_uint8(image, name)
            for image, name in zip((lr, bicubic, sr, hr), PANEL_NAMES)]
  height, width = panels[3].shape[:2]
  for panel, name in zip(panels[1:3], PANEL_NAMES[1:3]):
    if panel.shape[:2] != (height, width):
      raise ValueError(f"comparison_strip: {name} is {panel.shape[0]}x{panel.shape[1]}, but hr "
                       f"is {height}x{width}")
  panels[0] = _nearest_resize(panels[0], height, width)
  if crop is not None:
    crop = (crop, crop) if np.isscalar(crop) else tuple(crop)
    if len(crop) != 2 or min(crop) < 1:
      raise ValueError(f"comparison_strip: crop must be a positive size, got {crop}")
    panels = [_centre_crop(panel, crop) for panel in panels]
  bar = np.full((panels[0].shape[0], separator, 3), SEPARATOR_VALUE, np.uint8)
  pieces = [panels[0]]
  for panel in panels[1:]:
    pieces += [bar, panel]
  strip = np.concatenate(pieces, axis=1)
  if labels is None:
    return strip
  return np.concatenate([caption_bar(labels, panels[0].shape[1], separator), strip], axis=0)
