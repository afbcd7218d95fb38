"""What makes a training run stop with an error, and the checks that find it.

Each error's message names the step and the last good checkpoint (or the file at fault), so
main.py prints it as one line; the checks run between steps, never inside the jitted step.
"""

import errno

import jax
import jax.numpy as jnp
import numpy as np

from esrgan_jax import cli


class NonFiniteLossError(cli.UserError, RuntimeError):
  """Training produced NaN/Inf; the message names the step and the last good checkpoint."""


class DiskFullError(cli.UserError):
  """A checkpoint could not be written for lack of space; the last good one is kept."""


class InputError(cli.UserError):
  """The training input failed mid-run (every image of a slot unreadable, ...); one line."""


def last_good_checkpoint(manager) -> str:
  last = manager.latest_step()
  return (f"the last good checkpoint is step {last} in {manager.directory}" if last is not None
          else "no checkpoint was written yet")


def check_finite(step: int, metrics: dict[str, float], manager) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    raise NonFiniteLossError(f"non-finite loss at step {step}: {bad}; stopping, "
                             f"{last_good_checkpoint(manager)}")


@jax.jit
def all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def is_disk_full(error: BaseException) -> bool:
  return _disk_full_cause(error) is not None


def _disk_full_cause(error: BaseException):
  """The exception of `error`'s chain that says the disk is full; None if none does."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return error
    if "No space left on device" in str(error):
      return error
    error = error.__cause__ or error.__context__
  return None


def disk_full_error(error: BaseException, manager, removed: list[str]) -> DiskFullError:
  """The one line for a full disk: the file being written (a checkpoint unless the error names
  another, such as eval_results.json), the last good checkpoint, what was cleaned up."""
  cause = _disk_full_cause(error)
  where = getattr(cause, "filename", None) or manager.directory
  return DiskFullError(
      f"no space left on device writing {where}; {last_good_checkpoint(manager)}"
      + (f" (removed {len(removed)} unfinished save directories)" if removed else ""))
