"""Two commands on one workdir: the second is refused with one line naming the first.

Before the lock, a second run resumed from the first's checkpoint and wrote over its later steps
and results (both exited 0), and two started together left 8 tracebacks and an unfinished save.
"""

import os
import signal
import socket
import threading
import time

from esrgan_jax import cli
from esrgan_jax.runtime import workdir_lock
from tests.commands.test_main import PSNR_DEMO, assert_one_line_error, error_lines, finish, start

TRAIN_FAST = [*PSNR_DEMO, "--config.data.patch_size=32", "--config.train.log_every_steps=1"]


def test_a_second_run_and_eval_mode_are_refused_naming_the_holder(tmp_path):
  workdir = tmp_path / "run"
  args = [*TRAIN_FAST, f"--workdir={workdir}", "--config.train.num_steps=100000"]
  runs = [start(args), start(args)]  # at the same moment
  deadline = time.monotonic() + 240
  while all(run.poll() is None for run in runs):
    assert time.monotonic() < deadline, "neither run was refused"
    time.sleep(0.1)
  loser = next(run for run in runs if run.poll() is not None)
  holder = next(run for run in runs if run is not loser)
  returncode, _, stderr = finish(loser)
  holder_named = f"is in use by training on host {socket.gethostname()}, PID {holder.pid}, started "
  assert_one_line_error(returncode, stderr, holder_named)

  watchdog = threading.Timer(240, holder.kill)  # never hang the suite
  watchdog.start()
  lines = []
  for line in holder.stderr:  # training: its first progress line
    lines.append(line)
    if "l_pix " in line:
      break
  returncode, _, stderr = finish(start([*PSNR_DEMO, f"--workdir={workdir}", "--mode=eval"]))
  assert_one_line_error(returncode, stderr, holder_named)
  assert f"--config.eval.checkpoint={workdir}" in error_lines(stderr)[0]

  holder.send_signal(signal.SIGINT)
  lines += holder.stderr.readlines()
  holder.wait(timeout=120)
  watchdog.cancel()
  assert holder.returncode == cli.EXIT_INTERRUPTED, "".join(lines)[-3000:]
  # Released at the stop; the refused runs wrote nothing unfinished.
  assert not os.path.exists(workdir / workdir_lock.LOCK_NAME)
  assert not [n for n in os.listdir(workdir / "checkpoints") if "orbax-checkpoint-tmp" in n]
