"""Shared test setup: tests run on CPU with quiet TensorFlow.

The 'rbg' PRNG compiles parameter initialisation several times faster than threefry on CPU
(16 s -> 4 s for a tiny RRDBNet here); tests compare runs with each other, never with fixed
random streams, so they do not depend on the generator. Subprocesses inherit these variables.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


import jax  # pylint: disable=wrong-import-position  # after the variables above
import pytest  # pylint: disable=wrong-import-position
from absl import logging  # pylint: disable=wrong-import-position
from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def persistent_compilation_cache(tmp_path_factory):
  """For a module that marks `pytest.mark.usefixtures("persistent_compilation_cache")`: repeated
  runs of one config load their executables instead of compiling them again."""
  previous = {name: getattr(jax.config, name) for name in (
      "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes")}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  yield
  logging.set_verbosity(verbosity)
  for name, value in previous.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()

