"""The one check of a batch command's output names: none may replace an input or another output.

`degrade` and `upscale` both write OUT_DIR/NAME... for each input, so two inputs can name one
output (a.jpg and a.png) and an output can land on an input (OUT_DIR = IN_DIR without a suffix).
Either would lose data only at the end of the work; both are found here, before it, and each
command words the refusal in its own terms.
"""

import os
from typing import Callable, NamedTuple, Optional, Sequence

from esrgan_jax import cli


class Clash(NamedTuple):
  """The first output in the way: of input `path`, onto input `other` (`replaces_input`) or
  onto the output of the earlier input `other`."""
  replaces_input: bool
  output: str
  path: str
  other: str


def first_clash(paths: Sequence[str], outputs: Sequence[str],
                key: Callable[[str], str] = os.path.realpath) -> Optional[Clash]:
  """The first Clash of `outputs` (one per input of `paths`), in input order, or None.

  An output replaces an input when both resolve to one file; two outputs clash when `key` gives
  them the same value (of the real path: a command that may change an extension compares
  without it).
  """
  inputs = {os.path.realpath(p): p for p in paths}
  owners = {}
  for path, out in zip(paths, outputs):
    real = os.path.realpath(out)
    if real in inputs:
      return Clash(True, out, path, inputs[real])
    if key(real) in owners:
      return Clash(False, out, path, owners[key(real)])
    owners[key(real)] = path
  return None


def refuse_clashes(paths: Sequence[str], outputs: Sequence[str], replaces: str, both: str,
                   key: Callable[[str], str] = os.path.realpath) -> None:
  """Raises cli.UserError at the first clash, worded by the command: `replaces` and `both` are
  str.format templates over the Clash's fields (output, path, other)."""
  clash = first_clash(paths, outputs, key)
  if clash:
    raise cli.UserError((replaces if clash.replaces_input else both).format(**clash._asdict()))
