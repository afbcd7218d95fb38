"""How large an upscaled output may be (`--max_pixels`) and where it may go: both checked before
any work.

An output is held whole in host memory (inference/upscaler.py), so an input of 12000x12000 pixels
at x4 means a 48000x48000 array of 6.4 GiB as 8-bit RGB; a mistyped `--outscale 1e9` means one no
computer holds. Each image's output size is worked out from its file header before the image is
decoded, refused past `--max_pixels` output pixels with one line that says its size and memory
and how to go on, and stated in one line when it is large but allowed.

The output folder is checked before the checkpoint is read and created only after, so that a run
that fails at once leaves nothing behind; one created for a run that then wrote nothing (every
input refused or failed) is removed again, a folder that was there before never.

The default, 2**30 pixels (32768 x 32768, 3 GiB as 8-bit RGB), includes the largest output
benchmarks/upscale.py measured (32000x32000, 3.78 GiB peak); `--max_pixels` raises it.
"""

import errno
import os
from typing import Optional

from esrgan_jax import cli
from esrgan_jax.data import images

DEFAULT_MAX_PIXELS = 2**30
# Outputs from this many bytes up are announced before the work starts.
ANNOUNCE_BYTES = 2**30


class OutputTooLargeError(cli.UserError, ValueError):
  """An output larger than --max_pixels, or smaller than one pixel."""


def gib(nbytes: int) -> str:
  """A memory size for people: MiB below 1 GiB."""
  if nbytes < 2**30:
    return f"{nbytes / 2**20:.1f} MiB"
  return f"{nbytes / 2**30:.1f} GiB"


def check_outscale(outscale, max_pixels: int) -> None:
  """Even a 1x1 input makes an outscale x outscale output: refuses what no image can pass."""
  if outscale is not None and outscale * outscale > max_pixels:
    raise OutputTooLargeError(
        f"--outscale {outscale:g} makes outputs of at least {outscale:.0f}x{outscale:.0f} "
        f"pixels, more than --max_pixels {max_pixels}; use a smaller --outscale")


def check_output(path: str, in_size: tuple, out_size: tuple, channels: int, itemsize: int,
                 max_pixels: int) -> str:
  """The line announcing a large output ('' for an ordinary one); OutputTooLargeError past
  `max_pixels` or below one pixel. Sizes are (height, width); the memory is the output array's
  (channels x itemsize bytes a pixel)."""
  (in_height, in_width), (out_height, out_width) = in_size, out_size
  what = f"{in_width}x{in_height} -> {out_width}x{out_height}"
  if min(out_height, out_width) < 1:
    raise OutputTooLargeError(f"{path}: {what} has no pixels; use a larger --outscale")
  pixels = out_height * out_width
  nbytes = pixels * channels * itemsize
  if pixels > max_pixels:
    raise OutputTooLargeError(
        f"{path}: {what} is {pixels} output pixels ({gib(nbytes)} in memory), more than "
        f"--max_pixels {max_pixels}; raise --max_pixels to upscale it, or lower --outscale")
  if nbytes >= ANNOUNCE_BYTES:
    return f"{path}: {what}, {gib(nbytes)} in memory"
  return ""


def check_file(path: str, output_size, max_pixels: int) -> images.ImageHeader:
  """check_output for the image file at `path`, from its header (nothing decoded yet), which it
  returns; `output_size(height, width)` is the upscaler's. Prints the announcement of a large
  output."""
  header = images.read_header(path)
  note = check_output(path, header[:2], output_size(header.height, header.width),
                      header.channels, header.itemsize, max_pixels)
  if note:
    print(note, flush=True)
  return header


def check_output_dir(outdir: str) -> None:
  """Refuses an `outdir` that cannot be created or written, creating nothing: the nearest
  existing folder on its path must be a writable folder (prepare_output_dir proves it later)."""
  existing = os.path.abspath(outdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if existing == os.path.abspath(outdir) and not os.path.isdir(existing):
    raise cli.UserError(f"{outdir}: output folder is a file; choose another -o")
  if not os.path.isdir(existing):
    raise cli.UserError(f"{outdir}: output folder is not writable "
                        f"({os.strerror(errno.ENOTDIR)})")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise cli.UserError(f"{outdir}: output folder is not writable ({os.strerror(errno.EACCES)})")


def prepare_output_dir(outdir: str) -> Optional[str]:
  """Creates `outdir` and proves that a file can be written there, before any work is done.
  Returns the outermost folder this created (`outdir` or one above it), None if it existed."""
  created = None
  missing = os.path.abspath(outdir)
  while not os.path.exists(missing):
    created, missing = missing, os.path.dirname(missing)
  probe = os.path.join(outdir, f".esrgan_jax-probe-{os.getpid()}")
  try:
    os.makedirs(outdir, exist_ok=True)
    with open(probe, "wb"):
      pass
    os.remove(probe)
  except OSError as error:
    raise cli.UserError(f"{outdir}: output folder is not writable "
                        f"({error.strerror or error})") from None
  return created


def remove_if_unused(outdir: str, created: Optional[str]) -> bool:
  """Removes the folders prepare_output_dir created (`created` and those below it down to
  `outdir`) while they are empty: a run that wrote nothing leaves nothing. A folder the user had
  is never removed. Returns whether `outdir` is gone."""
  if created is None:
    return False
  folder = os.path.abspath(outdir)
  while True:
    try:
      os.rmdir(folder)  # only ever an empty folder
    except OSError:
      return False
    if folder == created:
      return True
    folder = os.path.dirname(folder)
