"""Multi-process training on this machine: 2 processes x 2 CPU devices against 1 x 4."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import REPO_ROOT as REPO
WORKER = os.path.join(REPO, "tests", "multiprocess_worker.py")
NUM_STEPS = 4
GAN_STEPS = 2


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(num_processes: int, devices_per_process: int, workdir: str, num_steps: int,
           generator_init: str = ""):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  coordinator = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen([sys.executable, WORKER, coordinator, str(num_processes), str(i),
                             workdir, str(num_steps), generator_init], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  return outputs


def load_params(workdir: str, process: int) -> dict[str, np.ndarray]:
  with np.load(os.path.join(workdir, f"params_process{process}.npz")) as f:
    return dict(f)


def topology(workdir: str, process: int) -> dict:
  with open(os.path.join(workdir, f"topology_process{process}.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  two_process = str(tmp_path_factory.mktemp("two_process"))
  one_process = str(tmp_path_factory.mktemp("one_process"))
  launch(2, 2, two_process, NUM_STEPS)
  launch(1, 4, one_process, NUM_STEPS)
  return two_process, one_process


def test_both_processes_see_four_devices_and_agree(runs):
  two_process, _ = runs
  for process in (0, 1):
    assert topology(two_process, process) == {"process_count": 2, "device_count": 4,
                                              "local_device_count": 2, "step": NUM_STEPS}
  first, second = load_params(two_process, 0), load_params(two_process, 1)
  assert first.keys() == second.keys()
  for name in first:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_two_processes_equal_one_process_with_four_devices(runs):
  two_process, one_process = runs
  assert topology(one_process, 0)["device_count"] == 4
  multi, single = load_params(two_process, 0), load_params(one_process, 0)
  for name in single:
    np.testing.assert_allclose(multi[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_two_process_checkpoint_restores_in_one_process(runs, tmp_path):
  two_process, _ = runs
  assert os.path.isdir(os.path.join(two_process, "checkpoints", str(NUM_STEPS)))
  # Only process 0 writes summaries.
  events = [f for f in os.listdir(two_process) if f.startswith("events.out.tfevents")]
  assert len(events) == 1
  resumed = str(tmp_path / "resumed")
  subprocess.run(["cp", "-r", two_process, resumed], check=True)
  (output,) = launch(1, 4, resumed, NUM_STEPS + 2)
  assert f"Resumed from step {NUM_STEPS}" in output
  assert topology(resumed, 0)["step"] == NUM_STEPS + 2
  with open(os.path.join(resumed, "topology_process0.json")) as f:
    assert json.load(f)["process_count"] == 1


@pytest.fixture(scope="module")
def gan_runs(runs, tmp_path_factory):
  """Stage 2 from the two-process stage-1 run, in 2 processes x 2 devices and in 1 x 4."""
  stage1, _ = runs
  two_process = str(tmp_path_factory.mktemp("gan_two_process"))
  one_process = str(tmp_path_factory.mktemp("gan_one_process"))
  outputs = launch(2, 2, two_process, GAN_STEPS, generator_init=stage1)
  launch(1, 4, one_process, GAN_STEPS, generator_init=stage1)
  return two_process, one_process, outputs


def test_gan_stage_starts_from_stage_one_in_two_processes_as_in_one(runs, gan_runs):
  two_process, one_process, outputs = gan_runs
  for output in outputs:
    assert "Generator initialised from" in output, output[-4000:]
  stage1 = load_params(runs[0], 0)
  first, second = load_params(two_process, 0), load_params(two_process, 1)
  single = load_params(one_process, 0)
  for name in single:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # Adam moves each weight by at most about the learning rate (1e-3) per step.
    np.testing.assert_allclose(first[name], stage1[name], atol=GAN_STEPS * 1.5e-3, err_msg=name)
    # Summation order differs between the topologies; Adam's normalised steps magnify it.
    np.testing.assert_allclose(first[name], single[name], rtol=1e-4, atol=1e-5, err_msg=name)
  assert topology(two_process, 0)["step"] == GAN_STEPS
