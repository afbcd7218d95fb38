"""One image array in, its upscaled twin out, in host memory of about the output's own size.

The output is one preallocated uint8/uint16 array. Each tile's float output is rounded
(`images.to_pixels`, half to even) and written into it as soon as it comes back, so there is never
a float copy of the whole output; `--outscale` resizes row strips on the way
(`bicubic.StripResize`), so the model-scale output is never held whole either. Peak host memory
for one image is therefore about the input plus the output plus a constant (windows in flight,
one row band of tiles when resizing, bicubic.RESIZE_STRIP_BYTES of resize scratch). `--tile 0` is
the exception: the network returns the whole float output at once.

Pixel formats: 8-bit stays 8-bit, 16-bit stays 16-bit, grayscale is fed to the RGB network three
times and turned back into gray with BT.601 luma weights (as Real-ESRGAN does), and RGBA keeps its
alpha, upscaled by the network on alpha copied to three channels (Real-ESRGAN's default, sharp
mask edges) or by MATLAB bicubic; an alpha of one value is copied, so that it stays exactly that.
"""

import collections
import math
from typing import Any, Callable, Optional

import numpy as np

from esrgan_jax.data import bicubic
from esrgan_jax.data.images import to_pixels
from esrgan_jax.inference import tiling

# ITU-R BT.601 luma, the weights of cv2's RGB2GRAY that Real-ESRGAN uses to return to gray.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
# Outputs of different images held at once so that their windows can share network calls; a
# larger image runs alone.
BATCH_OUTPUT_BYTES = 1 << 28


def output_size(height: int, width: int, scale: int, outscale: Optional[float]) -> tuple[int, int]:
  """The output's (height, width): the model's `scale`, or `outscale` resized."""
  if outscale is None or outscale == scale:
    return height * scale, width * scale
  # MATLAB's ceil(in * scale), with the same tolerance for float fuzz as bicubic.imresize.
  return (math.ceil(height * outscale - 1e-9), math.ceil(width * outscale - 1e-9))


class _RegionWriter:
  """Rounds the network's output blocks into channels `channels` of the output array, through
  an optional strip-wise resize (row bands of tiles are assembled for it)."""

  def __init__(self, out: np.ndarray, channels: slice, net_shape: tuple[int, int]):
    self.out, self.channels = out, channels
    self.resize = None
    if out.shape[:2] != net_shape:
      self.resize = bicubic.StripResize(net_shape, out.shape[:2], self._write_rows)
      self.band, self.band_top, self.band_filled = None, -1, 0
    self.net_width = net_shape[1]

  def _write_rows(self, first: int, rows: np.ndarray) -> None:
    self.out[first:first + len(rows), :, self.channels] = to_pixels(rows, self.out.dtype)

  def paste(self, top: int, left: int, block: np.ndarray) -> None:
    if self.resize is None:
      # Pixels already rounded (on the device: apply.to_uint8) are copied as they are.
      pixels = block if block.dtype == self.out.dtype else to_pixels(block, self.out.dtype)
      self.out[top:top + block.shape[0], left:left + block.shape[1], self.channels] = pixels
      return
    # Jobs come row-major: a band is complete when its blocks span the width.
    if top != self.band_top:
      self.band = np.empty((block.shape[0], self.net_width, block.shape[2]), np.float32)
      self.band_top, self.band_filled = top, 0
    self.band[:, left:left + block.shape[1]] = block
    self.band_filled += block.shape[1]
    if self.band_filled == self.net_width:
      self.resize.add(self.band)
      self.band = None


class Upscaler:
  """Upscales uint8/uint16 HxWxC images (C in 1, 3, 4), several at once when they are small.

  `submit(image, tag)` queues an image; finished ones are collected with `finished()` as
  (tag, output) pairs, and `flush()` finishes everything queued. `__call__` does one image.
  """

  def __init__(self, apply_fn, scale: int, outscale: Optional[float], tile: int, tile_pad: int,
               batch_size: int, alpha_upsampler: str = "model",
               progress: Optional[Callable[[int, int], None]] = None,
               multiple: Optional[int] = None,
               batch_output_bytes: Optional[int] = BATCH_OUTPUT_BYTES):
    self.scale, self.progress = scale, progress
    # The size the model's input must be a multiple of (tiling.generator_multiple).
    self.multiple = tiling.input_multiple(scale) if multiple is None else multiple
    self.outscale = scale if outscale is None else outscale
    self.tile, self.tile_pad = tile, tile_pad
    self.alpha_upsampler = alpha_upsampler
    self.batcher = tiling.Batcher(apply_fn, batch_size)
    self._done = collections.deque()
    # None: no limit; the caller bounds what it submits (video.py: batches that do not depend on
    # how many outputs happen to be held, so a resumed video is batched as an uninterrupted one).
    self.batch_output_bytes = batch_output_bytes
    self._held_bytes = 0
    self.windows_total = self.windows_done = 0

  def output_size(self, height: int, width: int) -> tuple[int, int]:
    return output_size(height, width, self.scale, self.outscale)

  def submit(self, image: np.ndarray, tag: Any = None) -> None:
    if (image.dtype not in (np.uint8, np.uint16) or image.ndim != 3
        or image.shape[-1] not in (1, 3, 4)):
      raise ValueError(f"expected uint8/uint16 HxWxC pixels with C in 1, 3, 4, got "
                       f"{image.dtype} {image.shape}")
    height, width, channels = image.shape
    out_shape = self.output_size(height, width) + (channels,)
    if self.batch_output_bytes is not None and self._held_bytes and (
        self._held_bytes + math.prod(out_shape) * image.itemsize > self.batch_output_bytes):
      self.flush()
    out = np.empty(out_shape, image.dtype)
    self._held_bytes += out.nbytes
    state = {"pending": 0, "submitting": True}

    def finish_one():
      state["pending"] -= 1
      self.windows_done += 1
      if self.progress is not None:
        self.progress(self.windows_done, self.windows_total)
      if not state["pending"] and not state["submitting"]:
        self._finish(tag, out)

    if channels == 4:
      self._alpha(image, out, finish_one, state)
    gray = channels == 1
    self._network_pass(image[..., :1] if gray else image[..., :3], gray, out,
                       slice(0, 1) if gray else slice(0, 3), finish_one, state)
    state["submitting"] = False
    if not state["pending"]:
      self._finish(tag, out)

  def _finish(self, tag, out) -> None:
    self._held_bytes -= out.nbytes
    self._done.append((tag, out))

  def _network_pass(self, source, gray, out, channels, finish_one, state) -> None:
    """Queues the windows of `source` (1 channel: copied to 3, output turned back to gray)."""
    height, width = source.shape[:2]
    scale, inverse_peak = self.scale, 1.0 / float(np.iinfo(source.dtype).max)
    source = tiling.pad_to_multiple(source, self.multiple)
    writer = _RegionWriter(out, channels, (height * scale, width * scale))

    def window_of(y, x, h, w):
      window = source[y:y + h, x:x + w].astype(np.float32) * inverse_peak
      return np.repeat(window, 3, axis=-1) if gray else window

    def paste(job, block):
      if gray:
        block = (block @ LUMA_WEIGHTS)[..., None]
      writer.paste(job.y0 * scale, job.x0 * scale, block)
      finish_one()

    count = len(tiling.plan_tiles(height, width, scale, self.tile, self.tile_pad,
                                  self.multiple)[1])
    state["pending"] += count
    self.windows_total += count
    tiling.submit_image(self.batcher, window_of, height, width, scale, self.tile, self.tile_pad,
                        paste, self.multiple)

  def _alpha(self, image, out, finish_one, state) -> None:
    alpha = image[..., 3:]
    if alpha.min() == alpha.max():  # Opaque (or uniformly transparent): keep it exact.
      out[..., 3] = alpha.flat[0]
    elif self.alpha_upsampler == "model":
      self._network_pass(alpha, True, out, slice(3, 4), finish_one, state)
    else:
      writer = _RegionWriter(out, slice(3, 4), alpha.shape[:2])
      inverse_peak = 1.0 / float(np.iinfo(alpha.dtype).max)
      for top in range(0, alpha.shape[0], 256):
        writer.paste(top, 0, alpha[top:top + 256].astype(np.float32) * inverse_peak)

  @property
  def windows_waiting(self) -> int:
    """Windows submitted but not yet in a network call (a partial batch)."""
    return self.batcher.waiting

  def flush(self) -> None:
    self.batcher.flush()

  def finished(self) -> list[tuple[Any, np.ndarray]]:
    """The (tag, output) pairs finished since the last call, in the order they finished."""
    done = list(self._done)
    self._done.clear()
    return done

  def __call__(self, image: np.ndarray) -> np.ndarray:
    self.submit(image)
    self.flush()
    return self.finished()[-1][1]
