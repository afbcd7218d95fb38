"""Tiled super-resolution that is the model's own output, in windows of bounded size.

Real-ESRGAN's scheme: the image is cut into `tile` x `tile` regions, each read with `tile_pad`
pixels of surrounding context, run through the network, and the part of each output that belongs
to its region is kept. Three choices differ from Real-ESRGAN's:

* Along an axis no longer than one window (tile + 2 * tile_pad) the window is the whole axis, so
  an image smaller than a window runs at its own size, exactly as `tile=0` does; nothing is padded
  with invented pixels. Windows of one image share one shape, so a jitted apply compiles once per
  (window shape, batch) and a folder of equal-sized images reuses it.
* Along a longer axis, windows near a border slide inwards to stay inside the image instead of
  being clipped smaller: a region on the border then sees the image border as untiled inference
  does (the network's own zero padding). With `tile_pad >= generator_radius(arch)` every region
  sees all it depends on and the tiled output equals the untiled one everywhere.
* x1 and x2 RRDBNets pixel-unshuffle their input by 4 and 2. Such a model only accepts sizes that
  are multiples of that factor, so the image is reflect-padded at the bottom and right to the next
  multiple (Real-ESRGAN's `mod_pad`, part of what these models compute) and windows start and end
  on that grid.

`Batcher` groups windows of one shape, from one image or many, into network calls.
"""

import collections
from typing import Callable, NamedTuple, Optional

import numpy as np

from esrgan_jax.models import span, srvgg

ApplyFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]
# Paste callback: (job, float32 output block of the job's region, cropped to the real image).
PasteFn = Callable[["TileJob", np.ndarray], None]


class TileJob(NamedTuple):
  """One region [y0, y1) x [x0, x1) of input pixels, read through the window at (wy, wx)."""
  y0: int
  y1: int
  x0: int
  x1: int
  wy: int
  wx: int


def input_multiple(scale: int) -> int:
  """The size an RRDBNet input must be a multiple of: its pixel-unshuffle factor (x4 needs 1)."""
  return max(1, 4 // scale)


def generator_multiple(arch: dict) -> int:
  """`input_multiple` of any generator's architecture record: SRVGGNetCompact and SPAN take any
  size (they never unshuffle), so padding their input would change their output at the border."""
  if arch.get("arch", "rrdbnet") == "rrdbnet":
    return input_multiple(int(arch["scale"]))
  return 1


def receptive_radius(scale: int, num_block: int) -> int:
  """Input pixels on each side that one output pixel of an RRDBNet may depend on.

  At LR resolution every 3x3 conv adds one pixel: conv_first, 15 per RRDB (three dense blocks of
  five convs) and conv_body; the convs after the two x2 upsamplings add two LR pixels at worst.
  x1/x2 models run that trunk on a pixel-unshuffled input (factor f = 4 / scale): f input pixels
  per trunk pixel, plus up to f - 1 for the pixel's place in its unshuffled block.
  `tile_pad` at least this makes tiled output equal untiled output (tests/inference/test_tiling.py).
  """
  factor = 4 // scale
  return factor * (1 + 15 * num_block + 1 + 2) + factor - 1


def generator_radius(arch: dict) -> int:
  """`receptive_radius` of any generator's architecture record (weights/generator.py's):
  RRDBNet's (no "arch" key), SRVGGNetCompact's or SPAN's, in input pixels on each side."""
  name = arch.get("arch", "rrdbnet")
  if name == "srvgg_compact":
    return srvgg.receptive_radius(int(arch["num_conv"]), int(arch["scale"]))
  if name == "span":
    return span.receptive_radius()
  if name != "rrdbnet":
    raise ValueError(f"generator_radius: unknown architecture {name!r}")
  return receptive_radius(int(arch["scale"]), int(arch["num_block"]))


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
  """Reflect-pads an HxWxC image at the bottom and right to multiples of `multiple`."""
  for axis in (0, 1):
    extra = _round_up(image.shape[axis], multiple) - image.shape[axis]
    if extra > 0:
      widths = [(0, 0)] * 3
      widths[axis] = (0, extra)
      # numpy's 'reflect' needs two pixels along the axis; one pixel can only be repeated.
      image = np.pad(image, widths, mode="reflect" if image.shape[axis] > 1 else "edge")
  return image


def _axis_spans(length: int, tile: int, pad: int) -> tuple[int, list[tuple[int, int, int]]]:
  """(window length, [(region start, region end, window start)]) along one padded axis."""
  window = tile + 2 * pad
  if tile == 0 or length <= window:
    return length, [(0, length, 0)]
  spans = []
  for start in range(0, length, tile):
    end = min(start + tile, length)
    spans.append((start, end, min(max(start - pad, 0), length - window)))
  return window, spans


def plan_tiles(height: int, width: int, scale: int, tile: int, tile_pad: int,
               multiple: Optional[int] = None) -> tuple[tuple[int, int], list[TileJob]]:
  """The window shape and the row-major jobs of an image (tile 0: the whole image at once).

  Windows lie in the image padded to the model's input `multiple` (default: RRDBNet's at this
  scale); regions are cropped to the real image, so a region of only padding is never computed.
  """
  if tile < 0 or tile_pad < 0:
    raise ValueError(f"tile ({tile}) and tile_pad ({tile_pad}) must be >= 0")
  multiple = input_multiple(scale) if multiple is None else multiple
  tile, tile_pad = _round_up(tile, multiple), _round_up(tile_pad, multiple)
  window_h, rows = _axis_spans(_round_up(height, multiple), tile, tile_pad)
  window_w, cols = _axis_spans(_round_up(width, multiple), tile, tile_pad)
  jobs = [TileJob(y0, min(y1, height), x0, min(x1, width), wy, wx)
          for y0, y1, wy in rows if y0 < height for x0, x1, wx in cols if x0 < width]
  return (window_h, window_w), jobs


def _padded_batch(count: int, batch_size: int) -> int:
  """Windows per call for `count` waiting ones: a power of two up to batch_size, so a partial
  batch costs at most twice its work and compiles are few (log2(batch_size) + 1 per shape)."""
  size = 1
  while size < count:
    size *= 2
  return min(size, batch_size)


class Batcher:
  """Runs windows through `apply_fn` in batches of up to `batch_size` windows of one shape.

  `submit` queues a window with the callback that receives its output; a batch runs as soon as
  `batch_size` windows of its shape wait, and `flush` runs the rest. Windows from different images
  share calls, and callbacks of one shape come in submission order. JAX dispatches
  asynchronously: the next batch is queued before the previous one is copied back, so the
  accelerator does not wait for the host.
  """

  def __init__(self, apply_fn: ApplyFn, batch_size: int):
    if batch_size < 1:
      raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    self.apply_fn, self.batch_size = apply_fn, batch_size
    self._waiting = collections.OrderedDict()  # window shape -> [(window, deliver)]
    self._in_flight = None
    self.calls = 0

  @property
  def waiting(self) -> int:
    """Windows queued for a batch that has not run yet."""
    return sum(len(queue) for queue in self._waiting.values())

  def submit(self, window: np.ndarray, deliver: Callable[[np.ndarray], None]) -> None:
    queue = self._waiting.setdefault(window.shape, [])
    queue.append((window, deliver))
    if len(queue) == self.batch_size:
      del self._waiting[window.shape]
      self._run(queue)

  def flush(self) -> None:
    """Runs every waiting window and delivers every result."""
    while self._waiting:
      _, queue = self._waiting.popitem(last=False)
      for first in range(0, len(queue), self.batch_size):
        self._run(queue[first:first + self.batch_size])
    self._deliver_in_flight()

  def _run(self, queue) -> None:
    windows = [window for window, _ in queue]
    size = _padded_batch(len(windows), self.batch_size)
    windows += [np.zeros_like(windows[0])] * (size - len(windows))
    results = self.apply_fn(np.stack(windows))
    self.calls += 1
    self._deliver_in_flight()
    self._in_flight = (results, [deliver for _, deliver in queue])

  def _deliver_in_flight(self) -> None:
    if self._in_flight is None:
      return
    results, delivers = self._in_flight
    self._in_flight = None
    results = np.asarray(results)
    for result, deliver in zip(results, delivers):
      deliver(result)


def submit_image(batcher: Batcher, window_of: Callable[[int, int, int, int], np.ndarray],
                 height: int, width: int, scale: int, tile: int, tile_pad: int,
                 paste: PasteFn, multiple: Optional[int] = None) -> int:
  """Queues every window of one image; returns how many. `paste` gets each region's output.

  window_of(y, x, h, w) returns the float32 window of the image padded to the model's input
  multiple (see `pad_to_multiple`); windows are made only as they are queued.
  """
  (window_h, window_w), jobs = plan_tiles(height, width, scale, tile, tile_pad, multiple)

  def deliver_to(job):
    def deliver(result):
      oy, ox = (job.y0 - job.wy) * scale, (job.x0 - job.wx) * scale
      paste(job, result[oy:oy + (job.y1 - job.y0) * scale, ox:ox + (job.x1 - job.x0) * scale])
    return deliver

  for job in jobs:
    batcher.submit(window_of(job.wy, job.wx, window_h, window_w), deliver_to(job))
  return len(jobs)


def upscale_tiled(apply_fn: ApplyFn, image: np.ndarray, scale: int, tile: int = 0,
                  tile_pad: int = 10, batch_size: int = 1,
                  progress: Optional[ProgressFn] = None,
                  multiple: Optional[int] = None) -> np.ndarray:
  """Runs `apply_fn` over `image` tile by tile and returns the float32 (H*scale)x(W*scale)xC output.

  Args:
    apply_fn: maps a float32 NHWC batch to its NHWC output `scale` times larger (e.g. a jitted
      RRDBNet apply); batches hold up to `batch_size` windows of one shape.
    image: float32 HxWxC image in [0, 1].
    scale: the model's upscaling factor (1, 2 or 4).
    tile: region size in input pixels; 0 runs the whole image at once. Rounded up to the model's
      input multiple.
    tile_pad: context pixels read around each region, rounded up likewise. Outputs equal untiled
      inference when it is at least `receptive_radius(scale, num_block)`.
    batch_size: windows per `apply_fn` call at most.
    progress: called as progress(windows_done, windows_total) as outputs are pasted.
    multiple: the size the model's input must be a multiple of (`generator_multiple`); default
      RRDBNet's at `scale`.
  """
  if image.ndim != 3:
    raise ValueError(f"upscale_tiled expects an HxWxC image, got shape {image.shape}")
  height, width, channels = image.shape
  multiple = input_multiple(scale) if multiple is None else multiple
  padded = pad_to_multiple(np.asarray(image, np.float32), multiple)
  output = np.empty((height * scale, width * scale, channels), np.float32)
  batcher = Batcher(apply_fn, batch_size)
  done, total = 0, len(plan_tiles(height, width, scale, tile, tile_pad, multiple)[1])

  def paste(job, block):
    nonlocal done
    output[job.y0 * scale:job.y1 * scale, job.x0 * scale:job.x1 * scale] = block
    done += 1
    if progress is not None:
      progress(done, total)

  submit_image(batcher, lambda y, x, h, w: padded[y:y + h, x:x + w], height, width,
               scale, tile, tile_pad, paste, multiple)
  batcher.flush()
  return output
