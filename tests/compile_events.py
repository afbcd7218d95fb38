"""Counting XLA compilations in a test: which jitted functions were compiled while it ran."""

import contextlib

import jax

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def recorded_compiles():
  """Yields a list that fills with the name of every function compiled inside the block."""
  names = []

  def listener(event, duration, **kwargs):
    del duration
    if event == _COMPILE_EVENT:
      names.append(kwargs.get("fun_name", ""))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield names
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
