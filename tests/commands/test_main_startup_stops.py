"""Ctrl-C and SIGTERM at any moment of `python -m esrgan_jax.main`'s start-up: one line, 130/143.

Twenty Ctrl-Cs, three SIGTERMs and one double Ctrl-C at delays spread over the start-up (imports,
JAX's backend, the config, TensorFlow's import, the data, the state's initialisation), eight runs
at a time. Each delay counts from the moment main.py has installed its handlers (the process then
catches SIGTERM): the interpreter's own start before that runs none of the command's code. Before
the fix, 3 of 6 such Ctrl-Cs crashed the process at exit (139) and some were lost (the run went on
training); a SIGTERM before cli.run killed it silently.
"""

import concurrent.futures
import signal
import time

from esrgan_jax import cli
from tests.commands.test_main import PSNR_DEMO, start

SIGINT_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0, 3.5, 4.0,
                 5.0, 6.0, 8.0, 10.0)
SIGTERM_DELAYS = (0.2, 2.0, 6.0)
RUNS_AT_ONCE = 8
ARGS = [*PSNR_DEMO, "--config.data.patch_size=32", "--config.train.num_steps=100000"]


def _catches_sigterm(pid: int) -> bool:
  with open(f"/proc/{pid}/status") as f:
    caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
  return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def _stop(args, signals, delay: float) -> tuple[int, str]:
  """Starts main, waits `delay` s after its handlers are in, sends `signals` 0.2 s apart."""
  process = start(args)
  try:
    deadline = time.monotonic() + 120
    while process.poll() is None and not _catches_sigterm(process.pid):
      assert time.monotonic() < deadline, "main.py never installed its handlers"
      time.sleep(0.01)
    time.sleep(delay)
    for i, signum in enumerate(signals):
      time.sleep(0.2 if i else 0)
      process.send_signal(signum)
    _, stderr = process.communicate(timeout=240)
  finally:
    if process.poll() is None:  # a lost signal: the run would train on
      process.kill()
      process.wait()
  return process.returncode, stderr


def test_stops_during_start_up_give_one_line_and_their_status(tmp_path):
  tries = [(signal.SIGINT, [signal.SIGINT], d) for d in SIGINT_DELAYS]
  tries += [(signal.SIGTERM, [signal.SIGTERM], d) for d in SIGTERM_DELAYS]
  tries.append((signal.SIGINT, [signal.SIGINT, signal.SIGINT], 0.3))  # the second stops at once
  with concurrent.futures.ThreadPoolExecutor(RUNS_AT_ONCE) as pool:
    outcomes = list(pool.map(
        lambda i: _stop([*ARGS, f"--workdir={tmp_path / str(i)}"], tries[i][1], tries[i][2]),
        range(len(tries))))
  for (signum, signals, delay), (returncode, stderr) in zip(tries, outcomes):
    name, status = (("Ctrl-C", cli.EXIT_INTERRUPTED) if signum == signal.SIGINT
                    else ("SIGTERM", cli.EXIT_TERMINATED))
    where = f"{len(signals)} x {name} {delay} s after start-up began: {stderr[-2000:]}"
    assert returncode == status, where
    assert "Fatal Python error" not in stderr and "Traceback" not in stderr, where
    last = stderr.strip().splitlines()[-1]
    # A late one may land in the loop, which saves first and names its step.
    in_loop = (f"esrgan_jax: stopped by Ctrl-C at step " if signum == signal.SIGINT
               else "Training stopped at step ")
    assert (last == f"esrgan_jax: stopped by {name} before training started"
            or in_loop in last), where
