"""Every failure of `python -m esrgan_jax.main` is one line and a documented exit status.

Subprocesses on tiny configs, started together since each spends most of its time importing.
"""

import os
import signal
import subprocess
import sys
import threading

from esrgan_jax import cli
from tests.commands.test_main import PSNR_DEMO, REPO_ROOT, assert_one_line_error, environment, finish
from tests.commands.test_main import saved_steps, start

TRAIN_FAST = [*PSNR_DEMO, "--config.data.patch_size=32", "--config.train.log_every_steps=1"]
# Makes Orbax's commit of step 2 fail with ENOSPC, as a full disk does, then runs main.
_DISK_FULL = """
import errno, runpy, sys
from orbax.checkpoint._src.path import atomicity
commit = atomicity.on_commit_callback
async def full_disk(tmp_dir, *args, **kwargs):
  if tmp_dir.get_final().name == "2":
    raise OSError(errno.ENOSPC, "No space left on device")
  return await commit(tmp_dir, *args, **kwargs)
atomicity.on_commit_callback = full_disk
sys.argv = ["esrgan_jax.main", *sys.argv[1:]]
runpy.run_module("esrgan_jax.main", run_name="__main__")
"""


# A full disk where it strikes first: TensorStore's write of an array of step 2's save, while
# the save's other writes are in flight (their errors are never retrieved; before the fix 235
# lines with 37 tracebacks, the useful line among them, and the unfinished folder left).
_DISK_FULL_MID_WRITE = """
import asyncio, runpy, sys
from orbax.checkpoint._src.serialization import serialization
serialize = serialization.async_serialize_from_host
async def full_disk(value, tspec, **kwargs):
  if "/2.orbax-checkpoint-tmp" in str(tspec):
    await asyncio.sleep(0.01)
    raise ValueError("RESOURCE_EXHAUSTED: Error writing in OCDBT database: Failed to write: "
                     "No space left on device [os_error_code='28']")
  return await serialize(value, tspec, **kwargs)
serialization.async_serialize_from_host = full_disk
sys.argv = ["esrgan_jax.main", *sys.argv[1:]]
runpy.run_module("esrgan_jax.main", run_name="__main__")
"""


def test_bad_inputs_fail_with_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  unreadable = tmp_path / "unreadable"
  unreadable.mkdir()
  for i in range(3):
    (unreadable / f"{i}.png").write_bytes(b"not a png")
  cases = {
      "missing config": (["--config=configs/nope.py"], "--config=configs/nope.py: No such file"),
      "unwritable workdir": ([*PSNR_DEMO], "cannot write there"),
      "num_feat=0": ([*PSNR_DEMO, "--config.model.num_feat=0"],
                     "config.model.num_feat must be a positive integer, got 0"),
      "num_block=0": ([*PSNR_DEMO, "--config.model.num_block=0"],
                      "config.model.num_block must be a positive integer, got 0"),
      "unreadable folder": ([*TRAIN_FAST, "--config.data.dataset=folder",
                             f"--config.data.hr_dir={unreadable}"], "every training image"),
  }
  runs = {}
  for name, (args, _) in cases.items():
    workdir = blocker / "run" if name == "unwritable workdir" else tmp_path / name.replace(" ", "_")
    runs[name] = start([*args, f"--workdir={workdir}"])
  for name, process in runs.items():
    returncode, _, stderr = finish(process, timeout=300)
    assert_one_line_error(returncode, stderr, cases[name][1])


def test_help_exits_0_and_lists_the_flags():
  returncode, stdout, _ = finish(start(["--help"]), timeout=120)
  assert returncode == cli.EXIT_OK
  for flag in ("--config", "--workdir", "--mode", "--verbose"):
    assert flag in stdout
  assert "Exit status" in stdout


def test_disk_full_ctrl_c_and_rerun_of_a_finished_run(tmp_path):
  full_dir, interrupted_dir = tmp_path / "full", tmp_path / "interrupted"
  script = tmp_path / "disk_full.py"
  script.write_text(_DISK_FULL)
  full = subprocess.Popen([sys.executable, str(script), *TRAIN_FAST, f"--workdir={full_dir}",
                           "--config.train.num_steps=3", "--config.train.checkpoint_every_steps=1"],
                          cwd=REPO_ROOT, env=environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  # Ctrl-C after the first progress line.
  process = start([*TRAIN_FAST, f"--workdir={interrupted_dir}", "--config.train.num_steps=100000"])
  watchdog = threading.Timer(240, process.kill)
  watchdog.start()
  lines, signalled = [], False
  for line in process.stderr:
    lines.append(line)
    if "l_pix " in line and not signalled:
      process.send_signal(signal.SIGINT)
      signalled = True
  watchdog.cancel()
  process.wait(timeout=120)
  stderr = "".join(lines)
  assert process.returncode == cli.EXIT_INTERRUPTED, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  stopped = [line for line in stderr.splitlines() if line.startswith("esrgan_jax: stopped by Ctrl-C")]
  steps = saved_steps(interrupted_dir)
  assert len(stopped) == 1 and len(steps) == 1, stderr[-3000:]
  assert stopped[0] == f"esrgan_jax: stopped by Ctrl-C at step {steps[0]}; the same command resumes"

  returncode, _, stderr = finish(full, timeout=300)
  assert_one_line_error(returncode, stderr, "no space left on device")
  assert stderr.lower().count("no space left on device") == 1, stderr[-3000:]
  assert saved_steps(full_dir) == [1]
  leftovers = [n for n in os.listdir(full_dir / "checkpoints") if "orbax-checkpoint-tmp" in n]
  assert not leftovers

  # The interrupted run, rerun with num_steps at its saved step: nothing to do.
  returncode, _, stderr = finish(start([*TRAIN_FAST, f"--workdir={interrupted_dir}",
                                        f"--config.train.num_steps={steps[0]}"]), timeout=300)
  assert returncode == cli.EXIT_OK, stderr[-3000:]
  assert (f"already complete: step {steps[0]} of {steps[0]} in {interrupted_dir}; nothing to do"
          in stderr)


def test_disk_full_mid_write_ends_with_its_line_alone(tmp_path):
  workdir = tmp_path / "full"
  script = tmp_path / "disk_full_mid_write.py"
  script.write_text(_DISK_FULL_MID_WRITE)
  returncode, _, stderr = finish(subprocess.Popen(
      [sys.executable, str(script), *TRAIN_FAST, f"--workdir={workdir}",
       "--config.train.num_steps=3", "--config.train.checkpoint_every_steps=1"], cwd=REPO_ROOT,
      env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), timeout=300)
  assert_one_line_error(returncode, stderr, "no space left on device writing ")
  assert stderr.strip().splitlines()[-1].startswith("esrgan_jax: error: no space left"), stderr
  for noise in ("never retrieved", "Event loop is closed", "RESOURCE_EXHAUSTED"):
    assert noise not in stderr, stderr[-3000:]
  assert "the last good checkpoint is step 1" in stderr
  assert saved_steps(workdir) == [1]
  assert not [n for n in os.listdir(workdir / "checkpoints") if "orbax-checkpoint-tmp" in n]
