"""Orbax's console output kept to what a user needs; `--verbose` (show_orbax_logs) shows it all.

Orbax logs a dozen lines per save, TensorStore's whole spec per failed read, and a failed read
or write (a damaged step, a full disk) leaves asyncio tasks and TensorStore callbacks that print
tracebacks from other threads until the process exits, after the one line that said what failed.
"""

import contextlib
import gc
import logging
import os
import sys

# Orbax warnings that say nothing is wrong: a step saved before Orbax wrote step metadata (read
# as if the checkpoint were broken), and metrics left out of a save that evaluates nothing.
_HARMLESS_ORBAX_WARNINGS = ("Metadata file does not exist", "Requested `tracked_metric`",
                            # A damaged step's _CHECKPOINT_METADATA (its commit time only):
                            # the step is read as without one, or reported as damaged.
                            "Failed to json parse Metadata file")
_show_orbax_detail = False


class _DropOrbaxDetail(logging.Filter):
  """Orbax logs a dozen INFO lines for every save; its real warnings and errors still pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    if record.levelno < logging.WARNING:
      return False
    # A full disk fails Orbax's background write with a traceback; the trainer says it in one line.
    error = record.exc_info[1] if record.exc_info else None
    if "No space left on device" in f"{record.getMessage()} {error}":
      return False
    return not str(record.msg).startswith(_HARMLESS_ORBAX_WARNINGS)


def quiet_orbax_logs(handler: logging.Handler) -> None:
  if not _show_orbax_detail and not any(isinstance(f, _DropOrbaxDetail) for f in handler.filters):
    handler.addFilter(_DropOrbaxDetail())
  _quiet_async_leftovers()


class _DropUnretrievedErrors(logging.Filter):
  """A failed Orbax read or write (a damaged step, a full disk) leaves asyncio tasks whose errors
  nobody retrieves; asyncio logs each with its traceback when it is collected, often after the
  one line that said what failed."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "exception was never retrieved" not in str(record.msg)


def _from_closed_loop(kind, value, trace) -> bool:
  """TensorStore's callback for an operation that ended after its asyncio loop had closed (the
  read or write had already failed); it reports the RuntimeError as unraisable."""
  if kind is not RuntimeError or str(value) != "Event loop is closed":
    return False
  while trace is not None:
    if trace.tb_frame.f_code.co_name == "call_soon_threadsafe":
      return True
    trace = trace.tb_next
  return False


def _quiet_async_leftovers() -> None:
  """Drops both kinds of leftovers of a failed Orbax operation, for the rest of the process
  (they come from other threads, until exit); --verbose keeps them."""
  if _show_orbax_detail:
    return
  asyncio_logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _DropUnretrievedErrors) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_DropUnretrievedErrors())
  if not getattr(sys.unraisablehook, "drops_closed_loop_callbacks", False):
    previous_unraisable = sys.unraisablehook

    def unraisablehook(unraisable):
      if not _from_closed_loop(unraisable.exc_type, unraisable.exc_value,
                               unraisable.exc_traceback):
        previous_unraisable(unraisable)

    unraisablehook.drops_closed_loop_callbacks = True
    sys.unraisablehook = unraisablehook
  if not getattr(sys.excepthook, "drops_closed_loop_callbacks", False):
    previous_except = sys.excepthook

    def excepthook(kind, value, trace):  # the same, printed with PyErr_Print
      if not _from_closed_loop(kind, value, trace):
        previous_except(kind, value, trace)

    excepthook.drops_closed_loop_callbacks = True
    sys.excepthook = excepthook


class _DropAllOrbax(logging.Filter):
  """While trying steps that may be damaged: Orbax logs each failure with TensorStore's whole
  spec (dozens of lines); restore_latest_good says it in one."""

  def filter(self, record: logging.LogRecord) -> bool:
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def show_orbax_logs(handler: logging.Handler) -> None:
  """--verbose: every Orbax line, from now on."""
  global _show_orbax_detail
  _show_orbax_detail = True
  for f in [f for f in handler.filters if isinstance(f, _DropOrbaxDetail)]:
    handler.removeFilter(f)
  asyncio_logger = logging.getLogger("asyncio")
  for f in [f for f in asyncio_logger.filters if isinstance(f, _DropUnretrievedErrors)]:
    asyncio_logger.removeFilter(f)


@contextlib.contextmanager
def quiet_failed_read():
  """Keeps a failed Orbax read to the one exception it raises."""
  _quiet_async_leftovers()
  silence, unraisable_hook = _DropAllOrbax(), sys.unraisablehook
  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(silence)
  # A failed read leaves Orbax's other reads as coroutines whose errors Python would print as
  # "Exception ignored in ..." tracebacks when they are collected.
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = unraisable_hook
    absl_logger.removeFilter(silence)


