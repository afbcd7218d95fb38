"""Compiling for a Cloud TPU slice that is not there: its topology, its chips' HBM, and what a
compiled program needs on each chip.

libtpu compiles for any TPU topology ahead of time on a machine without TPUs:
`jax.experimental.topologies.get_topology_desc` gives compile-only devices laid out as the slice's
chips and hosts, and a program jitted over a mesh of them compiles to the TPU executable whose
`memory_analysis()` is per chip (the SPMD-partitioned program every chip runs). Nothing here
runs on, or opens, a TPU.
"""

import contextlib
import os
import re
import tempfile
from typing import Callable, NamedTuple, Optional, Sequence

from esrgan_jax import cli

INSTALL_HINT = "pip install -r requirements-tpu.txt"

# HBM per chip in GiB, from Cloud TPU's system architecture pages
# (cloud.google.com/tpu/docs/v4, /v5e, /v5p and /v6e): v4 32 GiB, v5e 16, v5p 95, v6e (Trillium) 32.
HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
# Generations with two TensorCores per chip that JAX drives as one device (megacore).
_MEGACORE = ("v4", "v5p")
# Accelerator-type prefixes (gcloud's --accelerator-type) -> generation, and how many of the
# type's number make a chip: v4 and v5p count TensorCores (two per chip), v5e and v6e chips.
_ACCELERATOR_TYPES = {"v4": ("v4", 2), "v5p": ("v5p", 2), "v5litepod": ("v5e", 1),
                      "v5e": ("v5e", 1), "v6e": ("v6e", 1)}
# Chips per host: single-host v5e / v6e machines hold up to 8 chips, every other slice 4 (2x2).
_SINGLE_HOST_CHIPS = 8
# The shape Cloud TPU gives a slice of N chips (its accelerator-type tables), by layout.
_SHAPES = {
    2: {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
        256: (16, 16)},
    3: {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
        256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)},
}


class PlanError(cli.UserError):
  """A topology that cannot be planned, or libtpu missing; one line."""


class Topology(NamedTuple):
  generation: str  # "v4", "v5e", "v5p" or "v6e"
  shape: tuple[int, ...]  # chips along each axis: (4, 4) for v5e:4x4, (2, 2, 4) for v4:2x2x4

  @property
  def name(self) -> str:
    return f"{self.generation}:{'x'.join(map(str, self.shape))}"

  @property
  def chips(self) -> int:
    count = 1
    for side in self.shape:
      count *= side
    return count

  @property
  def hbm_bytes(self) -> int:
    return int(HBM_GIB[self.generation] * 2**30)

  def chips_per_host_bounds(self) -> tuple[int, int, int]:
    if len(self.shape) == 2 and self.chips <= _SINGLE_HOST_CHIPS:
      return (self.shape[0], self.shape[1], 1)
    return (min(self.shape[0], 2), min(self.shape[1], 2), 1)


def parse_topology(text: str) -> Topology:
  """`v5e:4x4` / `v4:2x2x4` (libtpu's names), or an accelerator type: `v5litepod-16`, `v6e-8`,
  `v4-32`, `v5p-32`. Raises PlanError naming the flag."""
  generations = ", ".join(HBM_GIB)
  match = re.fullmatch(r"(\w+):(\d+(?:x\d+)+)", text)
  if match:
    generation, shape = match.group(1), tuple(int(n) for n in match.group(2).split("x"))
    if generation not in HBM_GIB:
      raise PlanError(f"--topology={text}: unknown TPU generation {generation!r} (known: "
                      f"{generations})")
    axes = 3 if generation in _MEGACORE else 2
    if len(shape) != axes or min(shape) < 1:
      raise PlanError(f"--topology={text}: a {generation} slice has {axes} positive sides, "
                      f"e.g. {_example(generation)}")
    return Topology(generation, shape)
  match = re.fullmatch(r"(v\d\w*)-(\d+)", text)
  if not match or match.group(1) not in _ACCELERATOR_TYPES:
    raise PlanError(f"--topology={text}: give a topology such as v5e:4x4 or v4:2x2x4, or an "
                    f"accelerator type such as v5litepod-16, v6e-8, v4-32 or v5p-32")
  generation, per_chip = _ACCELERATOR_TYPES[match.group(1)]
  count = int(match.group(2))
  shapes = _SHAPES[3 if generation in _MEGACORE else 2]
  shape = shapes.get(count // per_chip) if count % per_chip == 0 else None
  if shape is None:
    raise PlanError(f"--topology={text}: not a slice size this table knows; give its shape "
                    f"instead, e.g. {_example(generation)}")
  return Topology(generation, shape)


def _example(generation: str) -> str:
  return f"{generation}:2x2x4" if generation in _MEGACORE else f"{generation}:4x4"


@contextlib.contextmanager
def _quiet_stderr():
  """libtpu prints its start-up complaints (no GCE metadata, no TPU here) from C++ to file
  descriptor 2; they say nothing about the plan."""
  saved = os.dup(2)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def devices(topology: Topology) -> list:
  """The compile-only devices of the slice, in libtpu's order (hosts major)."""
  try:
    import libtpu  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
  except ImportError:
    raise PlanError(f"libtpu is not installed, and plan needs it to compile for TPUs: "
                    f"{INSTALL_HINT}") from None
  # pylint: disable-next=g-import-not-at-top,import-outside-toplevel
  from jax.experimental import topologies
  # Only compiles: another process (a trainer on this machine) may hold libtpu's lock file.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  options = dict(chip_config_name="megacore" if topology.generation in _MEGACORE else "default",
                 chips_per_host_bounds=topology.chips_per_host_bounds())
  try:
    with _quiet_stderr():
      description = topologies.get_topology_desc(topology.name, "tpu", **options)
  except Exception as error:  # pylint: disable=broad-except  # libtpu's own message says why
    raise PlanError(f"--topology={topology.name}: libtpu cannot lay out this slice: "
                    f"{_first_line(error)}") from None
  return list(description.devices)


class Memory(NamedTuple):
  """Bytes per chip of a compiled program (its memory_analysis)."""
  arguments: int
  outputs: int
  aliased: int  # outputs written into donated arguments' buffers
  temporaries: int
  code: int

  @property
  def total(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


def memory_of(compiled) -> Memory:
  stats = compiled.memory_analysis()
  return Memory(arguments=stats.argument_size_in_bytes, outputs=stats.output_size_in_bytes,
                aliased=stats.alias_size_in_bytes, temporaries=stats.temp_size_in_bytes,
                code=stats.generated_code_size_in_bytes)


class OutOfMemory(cli.UserError, MemoryError):
  """The TPU compiler's refusal: the program needs more HBM than the chip has. plan.py turns it
  into its verdict (exit 3); anywhere else it is one line, as every error of the package."""

  def __init__(self, message: str):
    super().__init__(message)
    sizes = re.search(r"\(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)",
                      message)
    self.needed = _bytes(*sizes.group(1, 2)) if sizes else None
    self.available = _bytes(*sizes.group(3, 4)) if sizes else None


def _bytes(number: str, unit: str) -> int:
  return int(float(number) * 1024 ** "_KMGT".index(unit or "_"))


def _first_line(error: Exception) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


def compile_for_tpu(lower: Callable[[], object], what: str):
  """`lower().compile()`. The compiler's out-of-memory refusal raises OutOfMemory; any other
  failure to lower or compile, a PlanError of one line (`what` names the program)."""
  try:
    return lower().compile()
  except Exception as error:  # pylint: disable=broad-except  # jax's and XLA's errors
    message = _first_line(error)
    if message.startswith("RESOURCE_EXHAUSTED"):
      raise OutOfMemory(message.split(":", 1)[-1].strip()) from None
    raise PlanError(f"cannot compile {what} for the TPU: {message}") from None


def format_bytes(count: float) -> str:
  """1536 -> '1.5 KiB': GiB, MiB or KiB with two decimals, bytes below."""
  for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(count) >= size:
      return f"{count / size:.2f} {unit}"
  return f"{int(count)} B"


def largest(candidates: Sequence[int], fits: Callable[[int], bool]) -> Optional[int]:
  """The largest of the sorted `candidates` for which `fits` holds, assuming that it holds up
  to some point and not after: doubling from the smallest, then bisection, so about
  2 log2(len(candidates)) calls. None when not even the smallest fits."""
  if not candidates or not fits(candidates[0]):
    return None
  good, index = 0, 1
  while index < len(candidates) and fits(candidates[index]):
    good, index = index, 2 * index + 1
  bad = min(index, len(candidates))
  while bad - good > 1:
    middle = (good + bad) // 2
    if fits(candidates[middle]):
      good = middle
    else:
      bad = middle
  return candidates[good]
