"""One error family: every error the package raises for a user is a cli.UserError, which cli.run
maps to exit status 1 and one line for every command (main's included)."""

import importlib
import inspect

from esrgan_jax import cli
from tests.project.test_import_graph import module_files

# Not errors: the two ways a command stops (cli.run gives each its own line and status).
STOPS = (cli.Terminated, cli.Stopped)
# The builtin bases that callers catch these by, kept beside UserError.
BUILTIN_BASES = {
    "esrgan_jax.cli.ConfigError": ValueError,
    "esrgan_jax.data.datasets.DatasetNotFoundError": FileNotFoundError,
    "esrgan_jax.data.datasets.PairSizeError": ValueError,
    "esrgan_jax.data.images.ImageFolderError": ValueError,
    "esrgan_jax.data.images.ImageFolderNotFoundError": FileNotFoundError,
    "esrgan_jax.data.images.ImageFormatError": ValueError,
    "esrgan_jax.data.images.ImageReadError": ValueError,
    "esrgan_jax.data.images.ImageWriteError": OSError,
    "esrgan_jax.data.images.NotAnImageFolderError": NotADirectoryError,
    "esrgan_jax.data.prepared.PreparedDataError": ValueError,
    "esrgan_jax.evaluation.compare_models.ModelSpecError": ValueError,
    "esrgan_jax.inference.video_decode.VideoReadError": ValueError,
    "esrgan_jax.inference.video_encode.VideoWriteError": OSError,
    "esrgan_jax.inference.video_mux.ResumeError": ValueError,
    "esrgan_jax.interpolate.InterpolationError": ValueError,
    "esrgan_jax.metrics.naturalness.NiqeParamsError": ValueError,
    "esrgan_jax.prepare.PrepareError": ValueError,
    "esrgan_jax.runtime.tpu_plan.OutOfMemory": MemoryError,
    "esrgan_jax.training.failures.NonFiniteLossError": RuntimeError,
    "esrgan_jax.weights.store.CheckpointError": ValueError,
}


def package_exceptions() -> dict[str, type]:
  """'module.Class' -> class, for every exception class the package defines."""
  found = {}
  for name in module_files():
    module = importlib.import_module(name)
    for _, cls in inspect.getmembers(module, inspect.isclass):
      if issubclass(cls, BaseException) and cls.__module__ == name:
        found[f"{name}.{cls.__name__}"] = cls
  return found


def test_every_error_of_the_package_is_a_user_error():
  found = package_exceptions()
  strays = sorted(name for name, cls in found.items()
                  if not issubclass(cls, (cli.UserError, *STOPS)))
  assert not strays, f"errors outside the cli.UserError family: {strays}"
  for name, base in BUILTIN_BASES.items():
    assert name in found and issubclass(found[name], base), name
  assert issubclass(found["esrgan_jax.training.stop_request.Interrupted"], cli.Stopped)
