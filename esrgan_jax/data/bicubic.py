"""MATLAB's `imresize(..., 'bicubic')`, the degradation that makes the LR images of the SR benchmarks.

DIV2K, Set5, Set14, ... and BasicSR's LR folders were all made with MATLAB's antialiased bicubic
resize, so a model trained on anything else (PIL, cv2, jax.image.resize) sees a different blur. This
file follows MATLAB's algorithm (imresize.m, `contributions` and `resizeAlongDim`):

- cubic kernel with a = -0.5 (Keys 1981), support [-2, 2];
- when downscaling with antialiasing the kernel is stretched by 1/scale (and its height scaled by
  `scale`), so its support covers 4/scale input pixels;
- output size ceil(in * scale); output pixel x (1-based) maps to input coordinate
  u = x / scale + 0.5 * (1 - 1 / scale);
- each row of weights is normalised to sum to 1, and indices falling outside the image are
  mirrored (symmetric padding: ..., 2, 1, 1, 2, ..., n, n, n-1, ...);
- the two spatial dims are resized one after the other, the one with the smaller scale first
  (H first on ties);
- for uint8 input MATLAB keeps the class of the input, so the result is rounded (half away from
  zero) and saturated to uint8 after *each* dimension, not only at the end. We do the same.

`imresize` is the float64 NumPy implementation used on the host (LR images, NIQE's downscale);
`StripResize` is the same resize of an image that arrives in row strips, in bounded memory (the
upscaler's `--outscale` of outputs far larger than `imresize`'s scratch could hold).
"""

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

KERNEL_WIDTH = 4.0  # Support of the cubic kernel in input pixels at scale 1.
# Bytes of float64 scratch memory one strip of `StripResize` may use.
RESIZE_STRIP_BYTES = 1 << 27
# MATLAB's antialiased kernel for factor s spans 4s HR pixels (2 LR pixels each side of an output
# pixel); 3 LR pixels of context make a patch's LR bit-identical to the whole image's LR.
LR_CONTEXT = 3


def cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's imresize."""
  absx = np.abs(x)
  absx2 = absx * absx
  absx3 = absx2 * absx
  inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
  outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
  return inner + outer


def contributions(in_length: int, out_length: int, scale: float,
                  antialias: bool = True) -> Tuple[np.ndarray, np.ndarray]:
  """Weights and 0-based input indices, each (out_length, taps), of one resized dimension."""
  kernel_width = KERNEL_WIDTH
  if scale < 1 and antialias:
    # Stretching the kernel makes it a low-pass filter at the output's Nyquist frequency.
    kernel = lambda x: scale * cubic(scale * x)
    kernel_width = KERNEL_WIDTH / scale
  else:
    kernel = cubic
  x = np.arange(1, out_length + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - kernel_width / 2.0)
  taps = int(math.ceil(kernel_width)) + 2
  indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may be outside.
  weights = kernel(u[:, None] - indices)
  weights = weights / np.sum(weights, axis=1, keepdims=True)
  # MATLAB mirrors with aux = [1:n, n:-1:1] indexed modulo 2n.
  mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
  indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
  # Drop taps whose weight is zero for every output pixel (they only cost time).
  keep = np.any(weights != 0, axis=0)
  return weights[:, keep], indices[:, keep]


def _output_length(in_length: int, scale: float) -> int:
  # MATLAB's ceil(in * scale). The tiny tolerance keeps float fuzz such as 50 * 1.1 =
  # 55.00000000000001 from adding a whole row; exact integer factors 1/k are not affected.
  return int(math.ceil(in_length * scale - 1e-9))


def resize_plan(in_shape: Sequence[int], scale: Optional[float] = None,
                output_shape: Optional[Sequence[int]] = None):
  """Per-dim (scale, output length) for H and W, and the order MATLAB resizes them in."""
  if (scale is None) == (output_shape is None):
    raise ValueError("imresize: give exactly one of scale or output_shape, "
                     f"got scale={scale!r}, output_shape={output_shape!r}")
  in_h, in_w = int(in_shape[0]), int(in_shape[1])
  if in_h < 1 or in_w < 1:
    raise ValueError(f"imresize: image must be at least 1x1, got {in_h}x{in_w}")
  if scale is not None:
    scale = float(scale)
    if not scale > 0 or not math.isfinite(scale):
      raise ValueError(f"imresize: scale must be a positive number, got {scale!r}")
    scales = (scale, scale)
    out_shape = (_output_length(in_h, scale), _output_length(in_w, scale))
  else:
    if len(output_shape) != 2 or any(int(s) < 1 for s in output_shape):
      raise ValueError(f"imresize: output_shape must be two positive ints, got {output_shape!r}")
    out_shape = (int(output_shape[0]), int(output_shape[1]))
    scales = (out_shape[0] / in_h, out_shape[1] / in_w)
  # A stable sort puts H first when both scales are equal, like MATLAB's sort.
  order = tuple(int(d) for d in np.argsort(np.asarray(scales), kind="stable"))
  return scales, out_shape, order


def _round_to_uint8(x: np.ndarray) -> np.ndarray:
  # MATLAB's conversion to uint8: round half away from zero, then saturate.
  return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)


def _resize_dim_numpy(image: np.ndarray, dim: int, weights: np.ndarray,
                      indices: np.ndarray) -> np.ndarray:
  moved = np.moveaxis(image, dim, 0).astype(np.float64)  # (in, other, [C])
  gathered = moved[indices]  # (out, taps, other, [C])
  weights = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
  return np.moveaxis(np.sum(weights * gathered, axis=1), 0, dim)


def imresize(image: np.ndarray, scale: Optional[float] = None,
             output_shape: Optional[Tuple[int, int]] = None,
             antialias: bool = True) -> np.ndarray:
  """MATLAB `imresize(image, scale_or_size, 'bicubic')` of an HxW or HxWxC array.

  Args:
    image: uint8 or float array (any range), HxW or HxWxC.
    scale: resize factor for both dims (0.25 for x4 downscaling); output is ceil(in * scale).
    output_shape: (height, width) instead of `scale`; each dim then uses scale = out / in.
    antialias: stretch the kernel when downscaling, MATLAB's default.

  Returns:
    The resized array: uint8 for uint8 input (rounded as MATLAB does), otherwise the input's
    float dtype, computed in float64.
  """
  image = np.asarray(image)
  if image.ndim not in (2, 3):
    raise ValueError(f"imresize: expected an HxW or HxWxC image, got shape {image.shape}")
  is_uint8 = image.dtype == np.uint8
  if not is_uint8 and not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"imresize: expected uint8 or float pixels, got dtype {image.dtype}")
  scales, out_shape, order = resize_plan(image.shape, scale, output_shape)
  result = image
  for dim in order:
    weights, indices = contributions(image.shape[dim], out_shape[dim], scales[dim], antialias)
    result = _resize_dim_numpy(result, dim, weights, indices)
    if is_uint8:
      result = _round_to_uint8(result)
  if is_uint8:
    return result
  return result.astype(image.dtype)


def bicubic_downsample_uint8(hr: np.ndarray, scale: int) -> np.ndarray:
  """The LR image of a uint8 HR image for an integer SR factor, as MATLAB makes it."""
  hr = np.asarray(hr)
  if hr.dtype != np.uint8:
    raise ValueError(f"bicubic_downsample_uint8: expected uint8 pixels, got dtype {hr.dtype}")
  if int(scale) != scale or scale < 1:
    raise ValueError(f"bicubic_downsample_uint8: scale must be a positive integer, got {scale!r}")
  return imresize(hr, scale=1.0 / int(scale))


def bicubic_lr_patch(hr: np.ndarray, top: int, left: int, height: int, width: int,
                     scale: int) -> np.ndarray:
  """The height x width patch at (top, left) of bicubic_downsample_uint8(hr), from a crop of hr.

  `hr` must be mod-cropped. The crop reaches LR_CONTEXT LR pixels past the patch (or to the image
  border, where the crop's mirrored border is the image's own), so every tap of MATLAB's kernel
  sees the same pixels as in the whole image.
  """
  lr_h, lr_w = hr.shape[0] // scale, hr.shape[1] // scale
  top0, left0 = max(0, top - LR_CONTEXT), max(0, left - LR_CONTEXT)
  bottom = min(lr_h, top + height + LR_CONTEXT)
  right = min(lr_w, left + width + LR_CONTEXT)
  region = hr[top0 * scale:bottom * scale, left0 * scale:right * scale]
  lr_region = bicubic_downsample_uint8(region, scale)
  return lr_region[top - top0:top - top0 + height, left - left0:left - left0 + width]


def bicubic_lr_image(hr: np.ndarray, scale: int, tile: int = 64) -> np.ndarray:
  """bicubic_downsample_uint8 of a mod-cropped HR image, tile by tile to bound the memory used."""
  lr_h, lr_w = hr.shape[0] // scale, hr.shape[1] // scale
  lr = np.empty((lr_h, lr_w, hr.shape[2]), np.uint8)
  for top in range(0, lr_h, tile):
    for left in range(0, lr_w, tile):
      height, width = min(tile, lr_h - top), min(tile, lr_w - left)
      lr[top:top + height, left:left + width] = bicubic_lr_patch(hr, top, left, height, width,
                                                                 scale)
  return lr


class StripResize:
  """MATLAB bicubic `imresize` of an image that arrives as consecutive row strips.

  `add(rows)` takes the next input rows; `write(first_row, rows)` receives output rows as soon as
  every input row they depend on has arrived. Only the few input rows that later output rows
  still need are kept, and each step's scratch stays under RESIZE_STRIP_BYTES, where `imresize`
  gathers every tap of a whole dimension at once (tens of GB for a 16000x12000 output). Columns
  are resized first; MATLAB's order differs only in float rounding.
  """

  def __init__(self, in_shape: tuple[int, int], out_shape: tuple[int, int],
               write: Callable[[int, np.ndarray], None]):
    scales, out_shape, _ = resize_plan(in_shape, output_shape=out_shape)
    self.col_weights, self.col_index = contributions(in_shape[1], out_shape[1], scales[1])
    self.row_weights, self.row_index = contributions(in_shape[0], out_shape[0], scales[0])
    self.needs = self.row_index.max(axis=1)
    # The lowest input row any output row from here on reads.
    self.keep_from = np.minimum.accumulate(self.row_index.min(axis=1)[::-1])[::-1]
    self.write, self.out_width = write, out_shape[1]
    self.rows, self.base, self.next_out = None, 0, 0

  def _strip(self, bytes_per_line: int) -> int:
    return max(1, RESIZE_STRIP_BYTES // bytes_per_line)

  def _resize_columns(self, rows: np.ndarray) -> np.ndarray:
    out = np.empty((rows.shape[0], self.out_width, rows.shape[2]), np.float32)
    step = self._strip(self.col_index.size * rows.shape[2] * 8)
    for first in range(0, rows.shape[0], step):
      gathered = rows[first:first + step][:, self.col_index].astype(np.float64)
      out[first:first + step] = np.einsum("wt,nwtc->nwc", self.col_weights, gathered)
    return out

  def add(self, rows: np.ndarray) -> None:
    resized = self._resize_columns(rows)
    self.rows = resized if self.rows is None else np.concatenate([self.rows, resized])
    available = self.base + len(self.rows)
    waiting = np.nonzero(self.needs[self.next_out:] >= available)[0]
    end = self.next_out + int(waiting[0]) if waiting.size else len(self.needs)
    step = self._strip(self.row_index.shape[1] * self.out_width * rows.shape[2] * 8)
    for first in range(self.next_out, end, step):
      last = min(first + step, end)
      gathered = self.rows[self.row_index[first:last] - self.base].astype(np.float64)
      self.write(first, np.einsum("ot,otwc->owc", self.row_weights[first:last], gathered)
                 .astype(np.float32))
    self.next_out = end
    low = int(self.keep_from[end]) if end < len(self.needs) else available
    self.rows, self.base = self.rows[low - self.base:], low


def imresize_in_strips(image: np.ndarray, output_shape: tuple[int, int]) -> np.ndarray:
  """MATLAB bicubic `imresize` of a float32 HxWxC image, in strips of bounded memory."""
  result = np.empty(tuple(output_shape) + image.shape[2:], np.float32)

  def write(first, rows):
    result[first:first + len(rows)] = rows

  resize = StripResize(image.shape[:2], output_shape, write)
  step = max(1, RESIZE_STRIP_BYTES // (image.shape[1] * image.shape[2] * 32))
  for first in range(0, image.shape[0], step):
    resize.add(np.asarray(image[first:first + step], np.float32))
  return result
