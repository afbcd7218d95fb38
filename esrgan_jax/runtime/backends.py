"""JAX's backends started once, without libtpu's start-up complaints on a machine with no TPU.

With libtpu installed (requirements-tpu.txt, for `plan`) and no TPU here, JAX still starts the TPU
plugin, and libtpu prints five lines from C++ to file descriptor 2 ("could not determine TPU
accelerator type", "Logging before InitGoogle()", an INVALID_ARGUMENT line, a source trace)
before JAX falls back to the GPU or CPU: noise at the top of every command on a quiet machine (a
process that finds libtpu's lock taken by another skips it, so it comes and goes). The commands
start the backends here first: what the start printed is replayed, less those lines when no TPU
came up; any other line (a CUDA warning) is kept.
"""

import os
import sys
import tempfile

import jax

# Substrings of libtpu's lines when it finds no TPU (libtpu 0.0.42.1).
LIBTPU_NO_TPU_LINES = ("could not determine TPU", "Logging before InitGoogle()",
                       "=== Source Location Trace: ===", "libtpu_init_utils.cc")


def without_libtpu_noise(text: str) -> str:
  """`text` less the lines libtpu prints when it finds no TPU."""
  return "".join(line for line in text.splitlines(keepends=True)
                 if not any(noise in line for noise in LIBTPU_NO_TPU_LINES))


def start_quietly() -> str:
  """Starts JAX's backends (once per process; later calls cost nothing) and returns the default
  platform. Call after jax.distributed.initialize, which must come before any backend."""
  sys.stderr.flush()
  platform = None
  saved = os.dup(2)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), 2)
    try:
      platform = jax.devices()[0].platform
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      sink.seek(0)
      printed = sink.read().decode(errors="replace")
      sys.stderr.write(printed if platform == "tpu" else without_libtpu_noise(printed))
      sys.stderr.flush()
  return platform
