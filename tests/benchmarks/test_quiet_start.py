"""Every benchmarks/ entry point starts JAX through runtime/backends.py's start_quietly, as the
commands do, so that libtpu's no-TPU lines stay off the console."""

import glob
import os
import subprocess
import sys

import pytest

from tests import REPO_ROOT

# Entry point -> arguments that reach its JAX start cheaply. The start is stopped right there
# (see _STOP_AT_THE_START), so nothing is measured.
STARTS = {
    "benchmark": ["--child", "jax:float32", "--child_output", "{tmp}/rows.json"],
    "conv_gradients": [],
    "degradations": ["stages"],
    "demo_check": ["--workdir", "{tmp}", "--no_train"],
    "fast_models": ["--device", "cuda"],  # --device cpu pins JAX_PLATFORMS: no libtpu to quiet
    "input_pipeline": [],
    "metrics_speed": [],
    "realworld_tone": ["--steps", "1"],
    "step_convolutions": [],
    "upscale": ["throughput"],
    "video": [],
}
# Entry points that never start a JAX backend (checked below); the last two start it only in
# child processes pinned to the CPU (JAX_PLATFORMS=cpu: no libtpu to quiet).
NO_JAX_START = {"png_encoding": ["--size", "8x8", "--repeats", "1"],
                "conv_value_limit": ["--low", "8", "--high", "0"],
                "whole_image_memory": ["--height", "8", "--width", "8", "--batch", "1"]}

# Runs `python -m benchmarks.NAME ARGS` with start_quietly replaced by one that starts the
# backends, says so and ends the process.
_STOP_AT_THE_START = """
import runpy, sys
from esrgan_jax.runtime import backends
start = backends.start_quietly
def start_and_stop():
  print("started quietly on", start(), flush=True)
  sys.exit(0)
backends.start_quietly = start_and_stop
sys.argv = sys.argv[1:]
runpy.run_module("benchmarks." + sys.argv[0], run_name="__main__")
"""


def _run(name, args, tmp_path):
  # A fresh process that does start libtpu: without JAX_PLATFORMS (tests pin cpu) and allowed
  # past the lock file that another JAX process of the test run may hold.
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  env["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"
  args = [a.format(tmp=tmp_path) for a in args]
  return subprocess.run([sys.executable, "-c", _STOP_AT_THE_START, name, *args], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=300, check=False)


def test_every_entry_point_is_listed():
  entry_points = set()
  for path in glob.glob(os.path.join(REPO_ROOT, "benchmarks", "*.py")):
    with open(path, encoding="utf-8") as f:
      if 'if __name__ == "__main__":' in f.read():
        entry_points.add(os.path.basename(path)[:-3])
  assert entry_points == set(STARTS) | set(NO_JAX_START)


@pytest.mark.parametrize("name", sorted(STARTS))
def test_an_entry_point_starts_jax_quietly(name, tmp_path):
  run = _run(name, STARTS[name], tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  # Reached the quiet start before anything else had started JAX (libtpu would have spoken).
  assert "started quietly on" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
  assert "could not determine TPU" not in run.stderr and "InitGoogle" not in run.stderr, (
      run.stderr[-3000:])


@pytest.mark.parametrize("name", sorted(NO_JAX_START))
def test_an_entry_point_without_jax_says_nothing_of_libtpu(name, tmp_path):
  run = _run(name, NO_JAX_START[name], tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "started quietly on" not in run.stdout
  assert "could not determine TPU" not in run.stderr and "InitGoogle" not in run.stderr, (
      run.stderr[-3000:])
