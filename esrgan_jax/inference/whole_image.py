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

A second limit is one allocation: on the CPU, XLA's own (Eigen) kernels for a k x k convolution
(k > 1) ask for its patch matrix, k*k x its input's values, in one piece, and Linux's default
heuristic overcommit (vm.overcommit_memory 0) refuses any one allocation larger than the machine's
memory and swap: the process ends with `std::bad_alloc` with plenty free. Two 854x480 frames at x4
through RRDBNet hit it (its last 3x3 convolutions take 2 x 1920x3416x64 values: 30 GB of patches
on a 23.5 GiB machine); the bisected boundary is MemTotal to 0.01% for 3x3 and 5x5 kernels, and
1x1 convolutions have none (`python -m benchmarks.conv_value_limit`, benchmarks/RESULTS.md). The
process's default XLA flags put every model but SRVGGNetCompact on that path (runtime/xla_flags.py,
inference/apply.py), so there a whole-image call whose largest patch matrix passes MemTotal +
SwapTotal (less a 0.1% margin) is refused the same way, with a tile whose windows stay under it.
The patch matrix scales with pixels like the memory: the convolutions in the model's jaxpr at the
reference size. Such calls are refused, not sent through XLA's YNNPACK convolutions, which ran a
2 x 2880x3416x64 one (RESULTS.md): they move RRDBNet's and SPAN's outputs by up to 2.7e-5
(inference/apply.py), so an image's output would depend on its size; refused, every size keeps
one path's outputs. A model on the YNNPACK path (SRVGGNetCompact) is not limited.
"""

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from esrgan_jax import cli
from esrgan_jax.inference import apply
from esrgan_jax.inference.apply import jitted_apply
from esrgan_jax.inference.output_limits import gib
from esrgan_jax.runtime import xla_flags

REFERENCE_SIDE = 64  # input pixels a side of the one compile that is measured
SUGGESTED_TILES = (1024, 512, 256, 128, 64, 32)
# The share of MemTotal + SwapTotal a patch matrix may take: the bisected boundary was 0.002%
# under MemTotal (one allocation holds a little besides the matrix; benchmarks/RESULTS.md), and
# 2 x 854x400 frames at x4 through RRDBNet (99.6% of it) ran.
PATCH_SHARE = 0.999


class NotEnoughMemoryError(cli.UserError, ValueError):
  """A whole-image (--tile 0) network call larger than the memory available."""


class ConvolutionTooLargeError(cli.UserError, ValueError):
  """A whole-image (--tile 0) network call whose Eigen convolution would ask for more in one
  allocation than the system grants (see the module doc)."""


class CallMemory(NamedTuple):
  """Bytes of one network call: `fixed` (the parameters) + `per_pixel` x input pixels, the
  input padded to a multiple of `multiple` (tiling.generator_multiple). The convolution with the
  largest patch matrix takes `conv_per_pixel` values x input pixels, `patch_bytes` (k*k x the
  itemsize) for each; the matrix may take at most `conv_limit` bytes (None: no limit)."""
  fixed: int
  per_pixel: float
  multiple: int = 1
  conv_per_pixel: float = 0.0
  patch_bytes: int = 0
  conv_limit: Optional[int] = None

  def _pixels(self, batch: int, height: int, width: int) -> int:
    height, width = (math.ceil(size / self.multiple) * self.multiple for size in (height, width))
    return batch * height * width

  def need(self, batch: int, height: int, width: int) -> int:
    return int(self.fixed + self.per_pixel * self._pixels(batch, height, width))

  def conv_values(self, batch: int, height: int, width: int) -> int:
    return int(self.conv_per_pixel * self._pixels(batch, height, width))

  def conv_fits(self, batch: int, height: int, width: int) -> bool:
    return (self.conv_limit is None
            or self.conv_values(batch, height, width) * self.patch_bytes <= self.conv_limit)


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
    values, patch = largest_patches(model, params, shape)
    limit = one_allocation_limit() if eigen_convolutions(model) else None
    limit = None if limit is None else int(limit * PATCH_SHARE)
    _measured[model] = CallMemory(fixed, moving / (side * side), multiple,
                                  values / (side * side), patch, limit)
  return _measured[model]


def _convolutions(jaxpr):
  """(input values, patch bytes per value) of each k x k convolution, k > 1, in `jaxpr`."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      lhs, rhs = (var.aval for var in eqn.invars[:2])
      area = math.prod(rhs.shape[i] for i in eqn.params["dimension_numbers"].rhs_spec[2:])
      if area > 1:  # XLA:CPU runs bfloat16 / float16 convolutions in float32 (--half)
        yield math.prod(lhs.shape), area * max(lhs.dtype.itemsize, 4)
    for inner in jax_core.jaxprs_in_params(eqn.params):  # pjit, remat, scan bodies
      yield from _convolutions(inner)


def largest_patches(model, params, shape: jax.ShapeDtypeStruct) -> tuple[int, int]:
  """(input values, patch bytes per value) of the convolution of `model`'s apply at `shape` with
  the largest patch matrix (their product); (0, 0) without one."""
  closed = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, shape)
  return max(_convolutions(closed.jaxpr), key=lambda conv: conv[0] * conv[1], default=(0, 0))


def _meminfo(*fields: str) -> Optional[list[int]]:
  """Those /proc/meminfo fields in bytes; None when one cannot be read."""
  found = {}
  try:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
      for line in meminfo:
        name, _, rest = line.partition(":")
        if name in fields:
          found[name] = int(rest.split()[0]) * 1024
  except (OSError, ValueError, IndexError):
    return None
  return [found[name] for name in fields] if len(found) == len(fields) else None


def one_allocation_limit() -> Optional[int]:
  """The most one allocation may ask for under heuristic overcommit (vm.overcommit_memory 0):
  MemTotal + SwapTotal; None under another policy or where it cannot be told."""
  try:
    with open("/proc/sys/vm/overcommit_memory", encoding="ascii") as policy:
      if policy.read().strip() != "0":
        return None
  except OSError:
    return None
  total = _meminfo("MemTotal", "SwapTotal")
  return sum(total) if total else None


def eigen_convolutions(model) -> bool:
  """Whether `model`'s whole-image calls run XLA:CPU's Eigen convolutions (the patch limit):
  on the CPU, outside apply's LIBRARY_CONVOLUTIONS program, with XLA_FLAGS taking XLA's YNNPACK
  convolutions away (the project's default flag, or the user's own)."""
  return (jax.default_backend() == "cpu" and jitted_apply(model) is not apply.JITTED[1]
          and xla_flags.convolutions_taken_away())


def _mem_available() -> Optional[int]:
  available = _meminfo("MemAvailable")
  return available[0] if available else None


def available_bytes() -> Optional[int]:
  """Memory one call can still get on the default device; None when it cannot be told."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return _mem_available()
  stats = device.memory_stats() or {}
  if "bytes_limit" not in stats:
    return None
  return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def _tile_that_fits(memory: CallMemory, batch: int, tile_pad: int,
                    available: Optional[int]) -> int:
  """The largest of SUGGESTED_TILES whose windows (tile + 2 * tile_pad) fit, with room to
  spare (half of what is available: the images themselves are held too), and whose
  convolutions stay within the limit."""
  for tile in SUGGESTED_TILES:
    window = tile + 2 * tile_pad
    if ((available is None or memory.need(batch, window, window) <= available // 2)
        and memory.conv_fits(batch, window, window)):
      return tile
  return SUGGESTED_TILES[-1]


def check(path: str, what: str, memory: CallMemory, batch: int, height: int, width: int,
          tile_pad: int) -> None:
  """Refuses a whole-image call of `batch` inputs of height x width that needs more memory than
  is available (NotEnoughMemoryError) or runs a convolution past its path's limit
  (ConvolutionTooLargeError). `what`: 'image' or 'frame'."""
  available = available_bytes()
  need = memory.need(batch, height, width)
  whole = (f"{path}: --tile 0 runs each {width}x{height} {what} whole through the network "
           f"({batch} a call)")
  if available is not None and need > available:
    tile = _tile_that_fits(memory, batch, tile_pad, available)
    raise NotEnoughMemoryError(
        f"{whole}, which needs about {gib(need)} of memory, more than the {gib(available)} "
        f"available; use --tile {tile} to upscale it in tiles")
  if not memory.conv_fits(batch, height, width):
    tile = _tile_that_fits(memory, batch, tile_pad, available)
    values = memory.conv_values(batch, height, width)
    raise ConvolutionTooLargeError(
        f"{whole}, whose largest convolution takes {values:,} input values: XLA:CPU's "
        f"convolution kernels abort the process past {memory.conv_limit // memory.patch_bytes:,} "
        f"(their {gib(values * memory.patch_bytes)} patch matrix, one allocation, more than the "
        f"{gib(memory.conv_limit)} of memory and swap); use --tile {tile} to upscale it in tiles")


def image_batch(batch_size: int, output_bytes: int, held_bytes: int, same_size: int) -> int:
  """Whole images of one size a call can hold, at most: the Upscaler holds up to `held_bytes`
  of outputs (upscaler.BATCH_OUTPUT_BYTES) whose windows share calls, and only `same_size`
  windows are of that size (images and animation frames), padded to a power of two."""
  count = min(batch_size, same_size, max(1, held_bytes // max(1, output_bytes)))
  return min(batch_size, 1 << (count - 1).bit_length())
