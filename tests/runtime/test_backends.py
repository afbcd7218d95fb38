"""runtime/backends.py: libtpu's no-TPU lines kept off the console, other lines kept."""

import os
import subprocess
import sys

from esrgan_jax.runtime import backends
from tests import REPO_ROOT

# What libtpu 0.0.42.1 printed at `jax.devices()` on this (TPU-less) machine.
LIBTPU_LINES = (
    "Failed to find host bounds for accelerator type: WARNING: could not determine TPU "
    "accelerator type, please set env var `TPU_ACCELERATOR_TYPE` manually, otherwise libtpu.so "
    "may not properly initialize.\n"
    "WARNING: Logging before InitGoogle() is written to STDERR\n"
    "E0000 00:00:1796661703.055375   14740 common_lib.cc:554] INVALID_ARGUMENT: Error: unexpected "
    "worker hostname 'WARNING: could not determine TPU worker hostnames or IP addresses' from env "
    "var TPU_WORKER_HOSTNAMES.\n"
    "=== Source Location Trace: ===\n"
    "learning/45eac/tfrc/runtime/libtpu_init_utils.cc:327\n")


def test_only_libtpus_lines_are_dropped():
  other = "W external/xla/xla/service/gpu/nvptx_compiler.cc:930] a CUDA warning\n"
  assert backends.without_libtpu_noise(LIBTPU_LINES + other) == other


def _run(code: str) -> subprocess.CompletedProcess:
  # A fresh process that does start libtpu: without JAX_PLATFORMS (tests pin cpu) and allowed
  # past the lock file that another JAX process of the test run may hold.
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  env["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"
  return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=True)


def test_a_command_start_prints_nothing_of_libtpu():
  plain = _run("import jax; print(jax.devices()[0].platform)")
  assert "could not determine TPU" in plain.stderr  # the case this is for, seen here
  quiet = _run("from esrgan_jax.runtime import backends; print(backends.start_quietly())")
  assert quiet.stdout.strip() == "cpu"
  assert "TPU" not in quiet.stderr and "InitGoogle" not in quiet.stderr, quiet.stderr
