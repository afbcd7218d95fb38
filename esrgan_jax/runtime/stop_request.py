"""How a long command is asked to stop at its next safe point: SIGTERM and Ctrl-C as a flag.

The training loop reads the flag between steps (training/stop_request.py), video upscaling
between batches (inference/video.py). A second Ctrl-C raises KeyboardInterrupt at once. Which
signals are caught, what is said when one arrives, and which signal counts when several arrive
are the caller's: training lets the latest decide how the run ends, video the first.
"""

import signal
import threading
from typing import Callable, Iterable, Optional

from esrgan_jax import cli


class StopRequest:
  """Turns `signals` into a flag (`requested`, `signal`) while the `with` block runs.

  `notice(signum)` is called for each signal that sets the flag (not for a second Ctrl-C).
  With `first_decides`, the first signal is kept and later ones are not noticed; otherwise each
  replaces the one before. Handlers are installed from the main thread only (elsewhere Python
  refuses them) and the previous ones restored on exit, so in-process callers (tests) get
  theirs back.
  """

  def __init__(self, notice: Callable[[int], None],
               signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
               first_decides: bool = False):
    self.signal: Optional[int] = None  # the signal that asked to stop
    self._notice = notice
    self._signals = tuple(signals)
    self._first_decides = first_decides
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signal is not None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self._signals}
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt
    if self._first_decides and self.signal is not None:
      return
    self.signal = signum
    self._notice(signum)

  def stopped(self, message: str) -> cli.Stopped:
    """The cli.Stopped of the signal that asked: SIGTERM's status (143), else Ctrl-C's (130)."""
    if self.signal == signal.SIGTERM:
      return cli.Stopped(f"stopped by SIGTERM{message}", cli.EXIT_TERMINATED)
    return cli.Stopped(f"stopped by Ctrl-C{message}", cli.EXIT_INTERRUPTED)
