"""Whether `--tile 0` (each image or video frame through the network whole) fits in memory.

A tiled run's network memory is bounded by its windows; a whole-image call's grows with the image,
and past what the machine holds it ended the process with `std::bad_alloc` (480p video frames at
x4 with RRDBNet 23x64, two frames a call, on a 24 GiB CPU machine). So each size is checked before
its work and refused in one line that names the file, the need and what is available, and
suggests a tile size that fits.

The need is XLA's own figure: `memory_analysis()` of the compiled apply (arguments, outputs and
temporaries) at one small reference size, once per model, scaled by pixels. A convolutional
network's buffers are proportional to its input's pixels, so the scaled figure is the compile's
at the real size without compiling at every size (tests/inference/test_whole_image.py: equal to
the byte at other sizes and batches, jax 0.10.2 on the CPU). The parameters count once. What is
available: MemAvailable of /proc/meminfo on the CPU, `bytes_limit` less `bytes_in_use` of an
accelerator's memory_stats(); where neither is known nothing is refused. The images and outputs
the host holds besides are not counted: a suggested tile keeps its call under half of it.

Not caught: on the CPU with the default XLA flags, two 854x480 frames at x4 through RRDBNet
aborted with `std::bad_alloc` needing about 6.4 GiB with 20 GiB free, and ran without those flags
(`python -m benchmarks.whole_image_memory`, benchmarks/RESULTS.md): that abort is not a lack of
memory.
"""

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from esrgan_jax import cli
from esrgan_jax.inference.apply import jitted_apply
from esrgan_jax.inference.output_limits import gib

REFERENCE_SIDE = 64  # input pixels a side of the one compile that is measured
SUGGESTED_TILES = (1024, 512, 256, 128, 64, 32)


class NotEnoughMemoryError(cli.UserError, ValueError):
  """A whole-image (--tile 0) network call larger than the memory available."""


class CallMemory(NamedTuple):
  """Bytes of one network call: `fixed` (the parameters) + `per_pixel` x input pixels, the
  input padded to a multiple of `multiple` (tiling.generator_multiple)."""
  fixed: int
  per_pixel: float
  multiple: int = 1

  def need(self, batch: int, height: int, width: int) -> int:
    height, width = (math.ceil(size / self.multiple) * self.multiple for size in (height, width))
    return int(self.fixed + self.per_pixel * batch * height * width)


_measured = {}


def call_memory(model, params, multiple: int = 1) -> CallMemory:
  """XLA's memory figure for `model`'s apply, measured once per model (see the module doc)."""
  if model not in _measured:  # the params' shapes follow from the (frozen) module
    side = -(-REFERENCE_SIDE // multiple) * multiple
    shape = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    stats = jitted_apply(model).lower(model, params, shape).compile().memory_analysis()
    input_bytes = side * side * 3 * 4
    fixed = stats.argument_size_in_bytes - input_bytes
    moving = input_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    _measured[model] = CallMemory(fixed, moving / (side * side), multiple)
  return _measured[model]


def _mem_available() -> Optional[int]:
  try:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def available_bytes() -> Optional[int]:
  """Memory one call can still get on the default device; None when it cannot be told."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return _mem_available()
  stats = device.memory_stats() or {}
  if "bytes_limit" not in stats:
    return None
  return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def _tile_that_fits(memory: CallMemory, batch: int, tile_pad: int, available: int) -> int:
  """The largest of SUGGESTED_TILES whose windows (tile + 2 * tile_pad) fit, with room to
  spare (half of what is available: the images themselves are held too)."""
  for tile in SUGGESTED_TILES:
    window = tile + 2 * tile_pad
    if memory.need(batch, window, window) <= available // 2:
      return tile
  return SUGGESTED_TILES[-1]


def check(path: str, what: str, memory: CallMemory, batch: int, height: int, width: int,
          tile_pad: int) -> None:
  """Refuses (NotEnoughMemoryError) a whole-image call of `batch` inputs of height x width that
  needs more than is available. `what`: 'image' or 'frame'."""
  available = available_bytes()
  need = memory.need(batch, height, width)
  if available is None or need <= available:
    return
  tile = _tile_that_fits(memory, batch, tile_pad, available)
  raise NotEnoughMemoryError(
      f"{path}: --tile 0 runs each {width}x{height} {what} whole through the network ({batch} "
      f"a call), which needs about {gib(need)} of memory, more than the {gib(available)} "
      f"available; use --tile {tile} to upscale it in tiles")


def image_batch(batch_size: int, output_bytes: int, held_bytes: int, same_size: int) -> int:
  """Whole images of one size a call can hold, at most: the Upscaler holds up to `held_bytes`
  of outputs (upscaler.BATCH_OUTPUT_BYTES) whose windows share calls, and only `same_size`
  windows are of that size (images and animation frames), padded to a power of two."""
  count = min(batch_size, same_size, max(1, held_bytes // max(1, output_bytes)))
  return min(batch_size, 1 << (count - 1).bit_length())
