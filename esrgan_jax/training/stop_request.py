"""How a training run is asked to stop between steps: SIGTERM (preemption) and Ctrl-C.

train.py's loop checks `requested` on `stop_request()`'s runtime StopRequest after each step,
saves, and stops; Ctrl-C then surfaces as `Interrupted`, a cli.Stopped that cli.run turns into
its line and exit status (130).
"""

import signal

import jax
from absl import logging

from esrgan_jax import cli
from esrgan_jax.runtime.stop_request import StopRequest


class Interrupted(cli.Stopped):
  """Ctrl-C stopped training after saving `step`; the same command resumes."""

  def __init__(self, step: int):
    super().__init__(f"stopped by Ctrl-C at step {step}; the same command resumes",
                     cli.EXIT_INTERRUPTED)
    self.step = step


def stop_request() -> StopRequest:
  """Ctrl-C, and SIGTERM in single-process runs only: with several processes JAX's preemption
  service owns SIGTERM and the loop asks `manager.reached_preemption`, which makes every process
  stop at the same step. The latest signal decides how the run ends (SIGTERM after Ctrl-C: 143,
  as a preemption). A second Ctrl-C raises KeyboardInterrupt at once (the loop still saves the
  last step)."""
  signals = [signal.SIGINT] + ([signal.SIGTERM] if jax.process_count() == 1 else [])
  return StopRequest(_warn, signals)


def _warn(signum: int) -> None:
  name = "Ctrl-C" if signum == signal.SIGINT else f"signal {signum}"
  logging.warning("%s: saving a checkpoint and stopping (Ctrl-C again: stop at once).", name)
