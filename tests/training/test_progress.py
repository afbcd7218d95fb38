"""The training console's speed figures: MFU compares each device's share of the step's FLOPs
with one device's peak (the lowered step counts the whole mesh's work)."""

import os
import subprocess
import sys
import textwrap

import pytest

from esrgan_jax.training import progress
from tests import REPO_ROOT


def _measured(throughput, seconds_per_step: float, steps: int = 2) -> dict[str, float]:
  clock = iter([0.0, seconds_per_step * steps])
  throughput._clock = lambda: next(clock)  # pylint: disable=protected-access
  throughput.restart(0)
  return throughput.update(steps)


def test_mfu_is_each_devices_share_over_one_devices_peak(monkeypatch):
  monkeypatch.setattr(progress.flops, "peak_flops_per_device", lambda: 1e12)
  # 8e12 FLOPs per step on 4 devices at 2 steps/s: 4e12 FLOP/s per device, MFU 4, not 16.
  perf = _measured(progress.Throughput(8, 8e12, 0, num_devices=4), seconds_per_step=0.5)
  assert perf["perf/images_per_s"] == pytest.approx(16.0)
  assert perf["perf/tflops_per_s_per_device"] == pytest.approx(4.0)
  assert perf["perf/mfu"] == pytest.approx(4.0)
  alone = _measured(progress.Throughput(8, 8e12, 0, num_devices=1), seconds_per_step=0.5)
  assert alone["perf/mfu"] == pytest.approx(16.0)
  assert progress.flops_text(8e12, 4) == "8.000e+12 FLOPs per step, 2.000e+12 per device"
  assert progress.flops_text(8e12, 1) == "8.000e+12 FLOPs per step"
  assert progress.flops_text(None, 4) == "FLOPs unknown"


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from esrgan_jax.runtime import flops, parallel
    from esrgan_jax.training import progress
    assert jax.device_count() == 2, jax.devices()
    mesh = parallel.create_mesh()
    x = jnp.ones((8, 16, 16, 3))
    w = jnp.ones((3, 3, 3, 4))
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    sharded = jax.jit(conv, in_shardings=(parallel.batch_sharding(mesh), parallel.replicated(mesh)))
    whole = flops.flops_of(jax.jit(conv), x, w)
    assert flops.flops_of(sharded, x, w) == whole, (flops.flops_of(sharded, x, w), whole)
    throughput = progress.Throughput(8, whole, 0)
    print(throughput._flops / whole)
""")


def test_the_lowered_count_is_the_whole_meshs_and_is_shared_by_the_devices():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = subprocess.run([sys.executable, "-c", SHARDED], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert float(result.stdout.split()[-1]) == pytest.approx(0.5)
