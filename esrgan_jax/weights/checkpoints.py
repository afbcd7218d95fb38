"""Training checkpoints: one Orbax CheckpointManager per workdir, resume, and reading them back.

Layout: WORKDIR/checkpoints/<step>/{state, meta}. `state` is the TrainState without the frozen
VGG19 weights; `meta` is JSON with the generator architecture and stage, so a generator can be
loaded from a training run without its config. Orbax writes each step to a temporary directory and
renames it when complete, so a kill mid-save never leaves an unreadable latest checkpoint.
"""

import contextlib
import gc
import logging
import os
import sys
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from esrgan_jax import cli

CHECKPOINT_SUBDIR = "checkpoints"
BEST_METRIC = "eval_psnr"
DAMAGED_SUFFIX = ".damaged"


# Orbax warnings that say nothing is wrong: a step saved before Orbax wrote step metadata (read
# as if the checkpoint were broken), and metrics left out of a save that evaluates nothing.
_HARMLESS_ORBAX_WARNINGS = ("Metadata file does not exist", "Requested `tracked_metric`")
_show_orbax_detail = False


class CheckpointDamagedError(cli.UserError):
  """No saved step of a checkpoint directory could be restored; the message names them."""


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


def orbax_path(path: str | os.PathLike) -> epath.Path:
  """Orbax writes and reads only absolute local paths; gs:// paths go through as they are."""
  path = epath.Path(path)
  return path if str(path).startswith("gs://") else path.absolute()


def _best_psnr(metrics) -> float:
  return float(metrics[BEST_METRIC])


def create_manager(workdir: str | os.PathLike, keep: int,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest `keep` steps plus the one with the best eval PSNR; saves asynchronously.

  `best_fn` makes Orbax write each step's metrics next to it (without it they live only in
  memory), so the best checkpoint is still known, and kept, after a restart.
  """
  quiet_orbax_logs(absl_logging.get_absl_handler())
  preservation = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(keep),
      checkpoint_managers.BestN(get_metric_fn=_best_psnr, reverse=False, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      preservation_policy=preservation, best_fn=_best_psnr, best_mode="max",
      enable_async_checkpointing=not read_only,
      read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(orbax_path(workdir) / CHECKPOINT_SUBDIR, options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, state, meta: dict[str, Any],
         metrics: Optional[dict[str, float]] = None) -> None:
  """Starts an async save of `state` (the VGG19 weights left out) at its own step."""
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.replace(vgg=None)),
                                             meta=ocp.args.JsonSave(meta)),
               metrics=metrics, force=True)


def restore(manager: ocp.CheckpointManager, abstract_state, step: Optional[int] = None):
  """Restores into the shapes, dtypes and shardings of `abstract_state` (vgg is left as given)."""
  step = manager.latest_step() if step is None else step
  target = abstract_state.replace(vgg=None)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return restored["state"].replace(vgg=abstract_state.vgg)


@contextlib.contextmanager
def _quiet_failed_read():
  """Keeps a failed Orbax read to the one exception it raises."""
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


def restore_latest_good(manager: ocp.CheckpointManager, target, rename_damaged: bool = True
                        ) -> Optional[tuple[Any, int]]:
  """(state, step) of the newest saved step that restores cleanly; None when nothing is saved.

  A step that fails to restore (a truncated, zeroed or missing array file, a missing _METADATA)
  is skipped with one warning naming its directory and why. Once an older step has restored into
  the same `target` (so the failure was the files, not a changed config), the bad step's
  directory is renamed to `<step>.damaged`, never deleted: Orbax ignores that name, so the
  run's next save of that step writes a fresh directory. If no step restores, nothing is renamed
  and CheckpointDamagedError names the directory and the first reason. `rename_damaged=False`
  (read-only callers: eval mode, generator_init) only skips.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  damaged = []
  for step in steps:
    try:
      with _quiet_failed_read():
        state = restore(manager, target, step)
    except Exception as error:  # pylint: disable=broad-except  # Orbax/TensorStore raise many
      damaged.append((step, describe_restore_error(manager.directory / str(step), error)))
      continue
    for bad_step, reason in damaged:
      absl_logging.warning("checkpoint step %d in %s is damaged (%s); resuming from step %d%s",
                      bad_step, manager.directory, reason, step,
                      f", moved it to {bad_step}{DAMAGED_SUFFIX}" if rename_damaged else "")
    if damaged and rename_damaged:
      _set_aside(manager, [bad_step for bad_step, _ in damaged])
    return state, step
  bad_step, reason = damaged[0]
  raise CheckpointDamagedError(
      f"{manager.directory}: no saved step restores (steps {steps}; damaged files, or a config "
      f"whose model differs from the run's); step {bad_step}: {reason}")


def describe_restore_error(step_dir: epath.Path, error: BaseException) -> str:
  """The useful part of a failed restore, on one line: Orbax wraps TensorStore's reason in a
  message holding the whole TensorStore spec."""
  if not (step_dir / "state" / "_METADATA").exists():
    return "state/_METADATA is missing"
  innermost = error
  while innermost.__cause__ is not None or innermost.__context__ is not None:
    innermost = innermost.__cause__ or innermost.__context__
  lines = str(innermost).strip().splitlines() or [type(innermost).__name__]
  reason = lines[0].split(" in OCDBT database at ")[0]
  tail = str(innermost).split(": ")[-1] if ": " in str(innermost) else ""
  if tail and tail not in reason and len(tail) < 120:
    reason = f"{reason}: {tail}"
  return reason[:200]


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  if jax.process_index() == 0:
    for step in steps:
      source = manager.directory / str(step)
      destination = manager.directory / f"{step}{DAMAGED_SUFFIX}"
      count = 1
      while destination.exists():  # an earlier damaged copy of the same step
        destination = manager.directory / f"{step}{DAMAGED_SUFFIX}-{count}"
        count += 1
      source.rename(destination)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("esrgan_jax_checkpoint_set_aside")
  manager.reload()


def remove_unfinished_saves(manager: ocp.CheckpointManager) -> list[str]:
  """Deletes this run's half-written step directories (Orbax's `*.orbax-checkpoint-tmp*`), as
  after a full disk; finished steps are never touched. Returns the names removed."""
  removed = []
  if jax.process_index() == 0 and manager.directory.exists():
    for path in manager.directory.iterdir():
      if ".orbax-checkpoint-tmp" in path.name:
        path.rmtree()
        removed.append(path.name)
  return removed


def step_directories(path: str | os.PathLike) -> list[epath.Path]:
  """The step directories under a workdir or its checkpoints/ directory, newest first; one
  step's directory alone when `path` is one. FileNotFoundError when there is none."""
  path = orbax_path(path)
  if (path / "state").exists() and (path / "meta").exists():
    return [path]
  if (path / CHECKPOINT_SUBDIR).exists():
    path = path / CHECKPOINT_SUBDIR
  steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []
  if not steps:
    raise FileNotFoundError(f"{path}: no training checkpoint found")
  return [path / str(step) for step in reversed(steps)]


def find_step_directory(path: str | os.PathLike, step: Optional[int] = None) -> epath.Path:
  """Accepts a workdir, its checkpoints/ directory or one step's directory."""
  directories = step_directories(path)
  if step is None:
    return directories[0]
  if str(step) not in [d.name for d in directories]:
    found = sorted(int(d.name) for d in directories)
    raise FileNotFoundError(f"{directories[0].parent}: no checkpoint of step {step} "
                            f"(found steps {found})")
  return directories[0].parent / str(step)


def read_latest_generator(path: str | os.PathLike, which: str = "generator_ema"
                          ) -> tuple[Any, dict, epath.Path]:
  """(params, meta, step directory) of the newest step under `path` whose generator reads.

  Newer steps that fail to read (damaged files) are skipped with one warning each naming their
  directory; nothing is renamed, since readers (eval mode, generator_init, upscale) must not
  change a training run's files. CheckpointDamagedError when no step reads.
  """
  failures = []
  for step_dir in step_directories(path):
    try:
      with _quiet_failed_read():
        params, meta = read_generator(step_dir, which)
    except Exception as error:  # pylint: disable=broad-except  # Orbax/TensorStore raise many
      failures.append((step_dir, describe_restore_error(step_dir, error)))
      continue
    for bad_dir, reason in failures:
      absl_logging.warning("checkpoint %s is damaged (%s); reading %s instead", bad_dir, reason,
                           step_dir)
    return params, meta, step_dir
  bad_dir, reason = failures[0]
  raise CheckpointDamagedError(f"{bad_dir}: unreadable training checkpoint ({reason})"
                               + ("; no older step reads either" if len(failures) > 1 else ""))


def read_generator(step_dir: epath.Path, which: str = "generator_ema") -> tuple[Any, dict]:
  """(params, meta) of one generator ('generator' or 'generator_ema') of a training checkpoint."""
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  meta = checkpointer.restore(step_dir, ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  handler = ocp.PyTreeCheckpointer()
  tree_metadata = handler.metadata(step_dir / "state").item_metadata
  # Host NumPy arrays, not the saved shardings: the reader's devices need not be the writer's
  # (a pod's checkpoint read on one GPU, or by another number of processes).
  wanted = {which: jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree_metadata[which])}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = handler.restore(step_dir / "state", args=ocp.args.PyTreeRestore(
      wanted, restore_args=restore_args, partial_restore=True))
  return restored[which], meta
