"""Architecture records: the small dicts that name a generator's architecture and shape, stored
beside its parameters (weights/generator.py says which fields each architecture has)."""

import math
from typing import Any, Mapping, Sequence

from esrgan_jax.weights.store import CheckpointError

# A pixel shuffle's conv makes out_ch * scale^2 channels and the file says no more. As spandrel
# does, out_ch = num_in_ch is tried first, then these, and the first giving a square wins.
OUT_CHANNEL_GUESSES = (3, 4, 1)


def describe(model_name: str, fields: Sequence[str], arch: Mapping[str, Any]) -> str:
  """`SPAN(num_in_ch=3, ..., norm=True)`: the record as the module's constructor call."""
  return f"{model_name}({', '.join(f'{k}={arch[k]}' for k in fields if k in arch)})"


def check(arch: Mapping[str, Any], name: str, fields: Sequence[str], model_name: str,
          source: str) -> None:
  """A CheckpointError naming `source` unless `arch` is a record of architecture `name` with
  every field."""
  if arch.get("arch", name) != name:
    raise CheckpointError(f"{source}: arch {arch['arch']!r} is not {name!r}")
  missing = [f for f in fields if f not in arch]
  if missing:
    raise CheckpointError(f"{source}: {model_name} architecture is missing field(s) {missing}")


def scale_and_out_channels(channels: int, num_in_ch: int, source: str,
                           key: str) -> tuple[int, int]:
  """(scale, out_ch) with out_ch * scale^2 == channels, out_ch guessed as spandrel guesses it."""
  for out_ch in (num_in_ch, *OUT_CHANNEL_GUESSES):
    if out_ch < 1:
      continue
    scale = math.isqrt(channels // out_ch)
    if scale >= 1 and out_ch * scale * scale == channels:
      return scale, out_ch
  raise CheckpointError(f"{source}: {key} makes {channels} channels, which is not out_ch * "
                        f"scale^2 for out_ch in {(num_in_ch, *OUT_CHANNEL_GUESSES)}")
