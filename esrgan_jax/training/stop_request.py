"""How a training run is asked to stop between steps: SIGTERM (preemption) and Ctrl-C.

train.py's loop checks `StopRequest.requested` after each step, saves, and stops; Ctrl-C then
surfaces as `Interrupted`, a cli.Stopped that cli.run turns into its line and exit status (130).
"""

import signal
import threading

import jax
from absl import logging

from esrgan_jax import cli


class Interrupted(cli.Stopped):
  """Ctrl-C stopped training after saving `step`; the same command resumes."""

  def __init__(self, step: int):
    super().__init__(f"stopped by Ctrl-C at step {step}; the same command resumes",
                     cli.EXIT_INTERRUPTED)
    self.step = step


class StopRequest:
  """Turns SIGTERM (preemption) and Ctrl-C into a flag the loop checks between steps.

  SIGTERM: single-process runs only: with several processes JAX's preemption service owns it and
  the loop asks `manager.reached_preemption`, which makes every process stop at the same step.
  A second Ctrl-C raises KeyboardInterrupt at once (the loop still saves the last step). Restores
  the previous handlers on exit, so in-process callers (tests) get theirs back.
  """

  def __init__(self):
    self.signal = None  # the signal that asked to stop
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signal is not None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      signals = [signal.SIGINT] + ([signal.SIGTERM] if jax.process_count() == 1 else [])
      self._previous = {s: signal.signal(s, self._handle) for s in signals}
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt
    name = "Ctrl-C" if signum == signal.SIGINT else f"signal {signum}"
    logging.warning("%s: saving a checkpoint and stopping (Ctrl-C again: stop at once).", name)
    self.signal = signum
