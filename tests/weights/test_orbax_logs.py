"""weights/orbax_logs.py: what a failed Orbax read or write leaves behind stays off the console.

A damaged step or a full disk leaves asyncio tasks whose errors nobody retrieved (asyncio logs
each with its traceback when it is collected) and TensorStore callbacks that find their event
loop closed (printed through sys.excepthook from TensorStore's threads): 113 lines for one
garbled manifest.ocdbt, 37 tracebacks for a full disk, much of it after the line that mattered.
"""

import asyncio
import gc
import logging
import sys
import types

from esrgan_jax.weights import orbax_logs


def _closed_loop_error() -> RuntimeError:
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as error:
    return error
  raise AssertionError("a closed loop accepted a callback")


def test_unretrieved_task_errors_and_closed_loop_callbacks_are_dropped(monkeypatch, caplog):
  shown = []  # what reaches the hooks that print
  monkeypatch.setattr(sys, "excepthook", lambda kind, value, trace: shown.append(value))
  monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: shown.append(unraisable.exc_value))
  orbax_logs.quiet_orbax_logs(logging.Handler())

  async def fails():
    raise ValueError("RESOURCE_EXHAUSTED: No space left on device")

  loop = asyncio.new_event_loop()
  task = loop.create_task(fails())
  loop.run_until_complete(asyncio.sleep(0.01))
  loop.close()
  caplog.set_level(logging.ERROR)
  del task
  gc.collect()
  assert not [r for r in caplog.records if r.name == "asyncio"], caplog.records

  # TensorStore reports it as unraisable with no object (printed as the bare traceback).
  error = _closed_loop_error()
  sys.unraisablehook(_unraisable(error))
  sys.excepthook(type(error), error, error.__traceback__)
  assert not shown
  # The same message raised anywhere else is still shown.
  other = RuntimeError("Event loop is closed")
  sys.unraisablehook(_unraisable(other))
  sys.excepthook(RuntimeError, other, None)
  assert shown == [other, other]


def _unraisable(error: BaseException):
  return types.SimpleNamespace(exc_type=type(error), exc_value=error,
                               exc_traceback=error.__traceback__, err_msg=None, object=None)
