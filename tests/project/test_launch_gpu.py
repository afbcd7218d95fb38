"""The GPU launch scripts: launch/slurm_gpu.sh and slurm_task.sh under SLURM, and
launch/gpu_single_host.sh, run against test_launch_scripts.py's stand-in tools (`srun`,
`scontrol`, `nvidia-smi` and the trainer's `python`)."""

import shutil
import subprocess

import pytest

from tests.project.test_launch_scripts import (  # pylint: disable=unused-import
    LAUNCH, REPO, command_lines, flag, run_script, stand_ins)

# ----------------------------------------------------------------------------------------------
# SLURM.

SLURM_JOB = dict(SLURM_JOB_ID="4242424", SLURM_JOB_NODELIST="gpu[007-009]", SLURM_NNODES="3",
                 SLURM_CPUS_PER_TASK="16", SLURM_SUBMIT_DIR=str(REPO),
                 FAKE_SLURM_HOSTS="gpu007 gpu008 gpu009", FAKE_GPUS_PER_NODE="4",
                 CONFIG="configs/esrgan.py", WORKDIR="gs://my-bucket/esrgan")


def jax_slurm_coordinator(monkeypatch):
  """The address JAX's own SLURM detection picks for SLURM_JOB."""
  from jax._src.clusters.slurm_cluster import SlurmCluster
  monkeypatch.setenv("SLURM_JOB_ID", SLURM_JOB["SLURM_JOB_ID"])
  monkeypatch.setenv("SLURM_STEP_NODELIST", SLURM_JOB["SLURM_JOB_NODELIST"])
  return SlurmCluster.get_coordinator_address(timeout_secs=None, override_coordinator_port=None)


def test_slurm_one_process_per_node_with_coordinator_and_process_ids(stand_ins, monkeypatch,
                                                                     tmp_path):
  env = stand_ins.env(**SLURM_JOB, PYTHON=str(stand_ins.python), XLA_FLAGS="--xla_dump_to=/x")
  # sbatch runs a copy of the script from its spool directory, not from the checkout.
  spool_copy = tmp_path / "slurm_script"
  shutil.copy(LAUNCH / "slurm_gpu.sh", spool_copy)
  result = subprocess.run(["bash", str(spool_copy), "--config.train.batch_size=64"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr

  [scontrol] = stand_ins.calls("scontrol")
  assert scontrol["argv"] == ["show", "hostnames", "gpu[007-009]"]
  [srun] = stand_ins.calls("srun")
  for expected in ("--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                   "--cpus-per-task=16"):
    assert expected in srun["argv"]
  assert srun["cwd"] == str(REPO)

  tasks = stand_ins.calls("fake-python")
  assert len(tasks) == 3
  coordinator = jax_slurm_coordinator(monkeypatch)
  assert coordinator.startswith("gpu007:")
  for rank, task in enumerate(tasks):
    argv = task["argv"]
    assert argv[:2] == ["-m", "esrgan_jax.main"]
    assert flag(argv, "--config") == "configs/esrgan.py"
    assert flag(argv, "--workdir") == "gs://my-bucket/esrgan"
    assert flag(argv, "--coordinator_address") == coordinator
    assert flag(argv, "--num_processes") == "3"
    assert flag(argv, "--config.train.batch_size") == "64"
    assert argv[-1] == f"--process_id={rank}"
    assert task["env"]["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3"  # all 4 GPUs, not GPU $SLURM_LOCALID
    xla_flags = task["env"]["XLA_FLAGS"].split()
    assert "--xla_gpu_enable_latency_hiding_scheduler=true" in xla_flags
    assert xla_flags[-1] == "--xla_dump_to=/x"  # the user's flags come last, so they win


def test_slurm_coordinator_port_can_be_set(stand_ins):
  env = stand_ins.env(**SLURM_JOB, PYTHON=str(stand_ins.python), COORDINATOR_PORT="12345",
                      DRY_RUN="1")
  result = run_script("slurm_gpu.sh", env=env)
  assert result.returncode == 0, result.stderr
  [srun] = command_lines(result.stdout)
  assert flag(srun, "--coordinator_address") == "gpu007:12345"
  assert stand_ins.calls("srun") == []


@pytest.mark.parametrize("missing, hint", [
    ("SLURM_JOB_NODELIST", "run this script with sbatch"),
    ("CONFIG", "a config file"),
    ("WORKDIR", "every node can write"),
])
def test_slurm_missing_variable(stand_ins, missing, hint):
  variables = {k: v for k, v in SLURM_JOB.items() if k != missing}
  result = run_script("slurm_gpu.sh", env=stand_ins.env(**variables))
  assert result.returncode == 2
  assert f"{missing} is not set: set {missing} to " in result.stderr and hint in result.stderr
  assert stand_ins.calls("srun") == []


def test_slurm_sbatch_directives_come_before_the_first_command():
  # sbatch stops reading #SBATCH lines at the first line that is not a comment.
  lines = (LAUNCH / "slurm_gpu.sh").read_text().splitlines()
  first_command = next(i for i, line in enumerate(lines)
                       if line.strip() and not line.startswith("#"))
  directives = [line.split()[1] for line in lines[:first_command] if line.startswith("#SBATCH")]
  assert "--ntasks-per-node=1" in directives
  assert any(d.startswith("--nodes=") for d in directives)
  assert any(d.startswith("--gpus-per-node=") for d in directives)
  assert not [line for line in lines[first_command:] if line.startswith("#SBATCH")]


@pytest.mark.parametrize("gpu_variables, expected", [
    (dict(SLURM_GPUS_ON_NODE="8"), "0,1,2,3,4,5,6,7"),
    (dict(CUDA_VISIBLE_DEVICES="3,5"), "0,1"),
    (dict(FAKE_NVIDIA_SMI_GPUS="2"), "0,1"),
    (dict(JAX_LOCAL_DEVICE_IDS="1,3", SLURM_GPUS_ON_NODE="8"), "1,3"),
])
def test_slurm_task_gives_the_process_every_gpu_of_its_node(stand_ins, gpu_variables, expected):
  env = stand_ins.env(SLURM_PROCID="2", **gpu_variables)
  result = run_script("slurm_task.sh", str(stand_ins.python), "-m", "esrgan_jax.main", env=env)
  assert result.returncode == 0, result.stderr
  [task] = stand_ins.calls("fake-python")
  assert task["argv"] == ["-m", "esrgan_jax.main", "--process_id=2"]
  assert task["env"]["JAX_LOCAL_DEVICE_IDS"] == expected


def test_slurm_task_without_gpus_says_how_to_ask_for_them(stand_ins):
  result = run_script("slurm_task.sh", str(stand_ins.python), env=stand_ins.env(SLURM_PROCID="0"))
  assert result.returncode == 1
  assert "--gpus-per-node" in result.stderr
  assert stand_ins.calls("fake-python") == []


# ----------------------------------------------------------------------------------------------
# One host, several GPUs.

def test_gpu_single_host_runs_one_process_with_the_xla_flags(stand_ins, tmp_path):
  env = stand_ins.env(CONFIG="configs/esrgan_psnr.py:demo", WORKDIR="runs/demo",
                      PYTHON=str(stand_ins.python), ESRGAN_NUM_PROCESSES="2",
                      ESRGAN_PROCESS_ID="1", ESRGAN_COORDINATOR_ADDRESS="10.0.0.1:1234")
  result = run_script("gpu_single_host.sh", "--", "--config.train.batch_size=32", env=env,
                      cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  [trainer] = stand_ins.calls("fake-python")
  assert trainer["argv"] == ["-m", "esrgan_jax.main", "--config=configs/esrgan_psnr.py:demo",
                             "--workdir=runs/demo", "--config.train.batch_size=32"]
  assert trainer["cwd"] == str(REPO)
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in trainer["env"]["XLA_FLAGS"].split()
  assert not [k for k in trainer["env"] if k.startswith("ESRGAN_")]

  result = run_script("gpu_single_host.sh", "--dry-run", env=env)
  [command] = command_lines(result.stdout)
  assert command[:3] == [str(stand_ins.python), "-m", "esrgan_jax.main"]
  assert len(stand_ins.calls("fake-python")) == 1


def test_gpu_single_host_checks_its_variables(stand_ins):
  result = run_script("gpu_single_host.sh", env=stand_ins.env(CONFIG="configs/esrgan.py"))
  assert result.returncode == 2 and "WORKDIR is not set: set WORKDIR to" in result.stderr
  result = run_script("gpu_single_host.sh",
                      env=stand_ins.env(CONFIG="configs/nope.py", WORKDIR="runs/x"))
  assert result.returncode == 1 and "CONFIG 'configs/nope.py' not found" in result.stderr
  assert stand_ins.calls() == []
