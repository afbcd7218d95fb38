"""Tiled super-resolution of images of any size with a fixed-shape, batched, jitted model.

Real-ESRGAN's scheme: the image is cut into `tile` x `tile` regions, each read with `tile_pad`
pixels of surrounding context, run through the network, and the centre of each output (the part
that belongs to the region) is pasted into the result. Two choices differ from Real-ESRGAN's:

* Every window has one shape, (tile + 2 * tile_pad) squared, so a jitted `apply_fn` compiles once
  per (tile, tile_pad, batch_size) and never per image or per tile. Windows near an image border
  are slid inwards to stay inside the image instead of being clipped smaller; a region on the
  border then sees the image border exactly as untiled inference does (the network's own zero
  padding), and with `tile_pad` at least the receptive field the tiled output equals the untiled
  one everywhere, borders included. Only an image smaller than one window along an axis is
  reflect-padded up to the window along that axis.
* x1 and x2 RRDBNets pixel-unshuffle their input by 4 and 2. Windows start and end on that grid,
  so the unshuffled pixels of a window are those of the whole image.
"""

from typing import Callable, Optional

import numpy as np

ApplyFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]


def input_multiple(scale: int) -> int:
  """The size an RRDBNet input must be a multiple of: its pixel-unshuffle factor (x4 needs 1)."""
  return max(1, 4 // scale)


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def _pad_end(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Reflect-pads an HxWxC image at the bottom and right to height x width."""
  for axis, target in ((0, height), (1, width)):
    extra = target - image.shape[axis]
    if extra > 0:
      widths = [(0, 0)] * 3
      widths[axis] = (0, extra)
      # numpy's 'reflect' needs two pixels along the axis; one pixel can only be repeated.
      image = np.pad(image, widths, mode="reflect" if image.shape[axis] > 1 else "edge")
  return image


def _window_starts(length: int, tile: int, window: int, pad: int) -> list[tuple[int, int, int]]:
  """(region start, region end, window start) along one axis of an image padded to `length`.

  The window of a region begins `pad` pixels before it, slid back inside [0, length) when that
  would cross a border (length >= window is guaranteed by the caller).
  """
  spans = []
  for start in range(0, length, tile):
    end = min(start + tile, length)
    window_start = min(max(start - pad, 0), length - window)
    spans.append((start, end, window_start))
  return spans


def upscale_tiled(apply_fn: ApplyFn, image: np.ndarray, scale: int, tile: int = 0,
                  tile_pad: int = 10, batch_size: int = 1,
                  progress: Optional[ProgressFn] = None) -> np.ndarray:
  """Runs `apply_fn` over `image` tile by tile and returns the float32 (H*scale)x(W*scale)xC output.

  Args:
    apply_fn: maps a float32 NHWC batch to its NHWC output `scale` times larger (e.g. a jitted
      RRDBNet apply); it always receives batches of `batch_size` windows of one shape.
    image: float32 HxWxC image in [0, 1].
    scale: the model's upscaling factor (1, 2 or 4).
    tile: region size in input pixels; 0 runs the whole image at once (one compile per image
      size). Rounded up to the model's input multiple.
    tile_pad: context pixels read around each region, rounded up likewise. Outputs equal untiled
      inference when it covers the model's receptive field.
    batch_size: windows per `apply_fn` call; the last batch is filled up with blank windows.
    progress: called as progress(windows_done, windows_total) after each batch is pasted.
  """
  if image.ndim != 3:
    raise ValueError(f"upscale_tiled expects an HxWxC image, got shape {image.shape}")
  if tile < 0 or tile_pad < 0 or batch_size < 1:
    raise ValueError(f"tile ({tile}) and tile_pad ({tile_pad}) must be >= 0 and batch_size "
                     f"({batch_size}) >= 1")
  image = np.asarray(image, np.float32)
  height, width, channels = image.shape
  multiple = input_multiple(scale)
  if tile == 0:
    padded = _pad_end(image, _round_up(height, multiple), _round_up(width, multiple))
    output = np.asarray(apply_fn(padded[None]), np.float32)[0]
    if progress is not None:
      progress(1, 1)
    # A copy the caller owns: arrays viewed from JAX are read-only.
    return np.array(output[:height * scale, :width * scale])

  tile = _round_up(tile, multiple)
  tile_pad = _round_up(tile_pad, multiple)
  window = tile + 2 * tile_pad
  padded = _pad_end(image, max(_round_up(height, multiple), window),
                    max(_round_up(width, multiple), window))
  rows = _window_starts(padded.shape[0], tile, window, tile_pad)
  cols = _window_starts(padded.shape[1], tile, window, tile_pad)
  jobs = [(row, col) for row in rows for col in cols]

  output = np.empty((padded.shape[0] * scale, padded.shape[1] * scale, channels), np.float32)
  blank = np.zeros((window, window, channels), np.float32)

  done = 0

  def paste(batch_jobs, results):
    nonlocal done
    results = np.asarray(results, np.float32)
    for result, ((y0, y1, wy), (x0, x1, wx)) in zip(results, batch_jobs):
      oy, ox = (y0 - wy) * scale, (x0 - wx) * scale
      output[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = (
          result[oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale])
    done += len(batch_jobs)
    if progress is not None:
      progress(done, len(jobs))

  # JAX dispatches asynchronously: the next batch is queued before the previous one is copied
  # back and pasted, so the accelerator does not wait for the host.
  pending = None
  for first in range(0, len(jobs), batch_size):
    batch_jobs = jobs[first:first + batch_size]
    windows = [padded[wy:wy + window, wx:wx + window] for (_, _, wy), (_, _, wx) in batch_jobs]
    windows += [blank] * (batch_size - len(windows))
    results = apply_fn(np.stack(windows))
    if pending is not None:
      paste(*pending)
    pending = (batch_jobs, results)
  paste(*pending)
  return output[:height * scale, :width * scale]
