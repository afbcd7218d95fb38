"""Training checkpoints: one Orbax CheckpointManager per workdir, resume, and reading them back.

Layout: WORKDIR/checkpoints/<step>/{state, meta}. `state` is the TrainState without the frozen
VGG19 weights; `meta` is JSON with the generator architecture and stage, so a generator can be
loaded from a training run without its config. Orbax writes each step to a temporary directory and
renames it when complete, so a kill mid-save never leaves an unreadable latest checkpoint.
"""

import json
import os
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from esrgan_jax import cli
from esrgan_jax.weights import orbax_logs

CHECKPOINT_SUBDIR = "checkpoints"
BEST_METRIC = "eval_psnr"
DAMAGED_SUFFIX = ".damaged"


class CheckpointDamagedError(cli.UserError):
  """No saved step of a checkpoint directory could be restored; the message names them."""


class CheckpointUnreadableError(cli.UserError):
  """A step this user may not read: not damage, so nothing is skipped or moved."""


def orbax_path(path: str | os.PathLike) -> epath.Path:
  """Orbax writes and reads only absolute local paths; gs:// paths go through as they are."""
  path = epath.Path(path)
  return path if str(path).startswith("gs://") else path.absolute()


def _best_psnr(metrics) -> float:
  return float(metrics[BEST_METRIC])


class _Manager(ocp.CheckpointManager):
  """Orbax's manager, except that a step whose metrics file does not read (empty, garbage) has
  no metrics, where Orbax's constructor fails with a JSONDecodeError: restore_latest_good then
  finds the step damaged and sets it aside."""

  def metrics(self, step: int):
    try:
      return super().metrics(step)
    except ValueError:  # JSONDecodeError, or metrics that are not a mapping
      return None


def create_manager(workdir: str | os.PathLike, keep: int,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest `keep` steps plus the one with the best eval PSNR; saves asynchronously.

  `best_fn` makes Orbax write each step's metrics next to it (without it they live only in
  memory), so the best checkpoint is still known, and kept, after a restart.
  """
  orbax_logs.quiet_orbax_logs(absl_logging.get_absl_handler())
  preservation = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(keep),
      checkpoint_managers.BestN(get_metric_fn=_best_psnr, reverse=False, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      preservation_policy=preservation, best_fn=_best_psnr, best_mode="max",
      enable_async_checkpointing=not read_only,
      read_only=read_only, create=not read_only)
  return _Manager(orbax_path(workdir) / CHECKPOINT_SUBDIR, options=options,
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


def restore_latest_good(manager: ocp.CheckpointManager, target, rename_damaged: bool = True
                        ) -> Optional[tuple[Any, int]]:
  """(state, step) of the newest saved step that restores cleanly; None when nothing is saved.

  A step that fails to restore (a truncated, zeroed or missing array file, a missing _METADATA,
  a missing or garbled meta or metrics file) is skipped with one warning naming its directory
  and why; one this user may not read raises CheckpointUnreadableError instead (a permission is
  not damage: nothing is moved). Once an older step has restored into the same `target` (so
  the failure was the files, not a changed config), the bad step's directory is renamed to
  `<step>.damaged`, never deleted: Orbax ignores that name, so the run's next save of that step
  writes a fresh directory. If no step restores, nothing is renamed
  and CheckpointDamagedError names the directory and the first reason. `rename_damaged=False`
  (read-only callers: eval mode, generator_init) only skips.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  damaged = []
  for step in steps:
    state, reason = _read_whole(manager.directory / str(step),
                                lambda step=step: restore(manager, target, step))
    if reason is not None:
      damaged.append((step, reason))
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


def _read_whole(step_dir: epath.Path, read: Callable[[], Any]) -> tuple[Any, Optional[str]]:
  """(what `read` returned, None), or (None, why the step is damaged): one rule for training
  and readers, a step is used only when its meta, metrics (if any) and state all read.
  CheckpointUnreadableError when this user may not read it: that is not damage."""
  try:
    reason = _small_files_damage(step_dir)
    if reason is None:
      with orbax_logs.quiet_failed_read():
        return read(), None
  except Exception as error:  # pylint: disable=broad-except  # Orbax/TensorStore raise many
    check_readable(step_dir)
    return None, describe_restore_error(step_dir, error)
  return None, reason


def _small_files_damage(step_dir: epath.Path) -> Optional[str]:
  """What is wrong with a step's JSON files that a restore would let pass: meta, which training
  does not read but readers of its generator need, and metrics (Orbax's manager reads them)."""
  metrics = step_dir / "metrics" / "metrics"
  return (_json_file_damage(step_dir / "meta" / "metadata")
          or (_json_file_damage(metrics) if metrics.exists() else None))


def _json_file_damage(path: epath.Path) -> Optional[str]:
  """What is wrong with one of a step's small JSON files, None when it reads."""
  name = f"{path.parent.name}/{path.name}"
  if not path.exists():
    return f"{name} is missing"
  text = path.read_text()
  try:
    json.loads(text)
  except ValueError:
    return f"{name} is empty" if not text.strip() else f"{name} is not JSON"
  return None


def check_readable(step_dir: epath.Path) -> None:
  """CheckpointUnreadableError naming the first file or folder of a step this user may not
  read (a permission, not damage); local paths only, others pass."""
  if "://" in str(step_dir):
    return
  denied = []
  for folder, subfolders, files in os.walk(step_dir, onerror=lambda e: denied.append(e.filename)):
    denied += [os.path.join(folder, name) for name in subfolders
               if not os.access(os.path.join(folder, name), os.R_OK | os.X_OK)]
    denied += [os.path.join(folder, name) for name in files
               if not os.access(os.path.join(folder, name), os.R_OK)]
    if denied:
      break
  if denied:
    raise CheckpointUnreadableError(
        f"{denied[0]}: permission denied: this user cannot read training checkpoint {step_dir}; "
        "give it read access (a permission is not damage: nothing was skipped or moved)")


def describe_restore_error(step_dir: epath.Path, error: BaseException) -> str:
  """The useful part of a failed restore, on one line: Orbax wraps TensorStore's reason in a
  message holding the whole TensorStore spec."""
  if not (step_dir / "state" / "_METADATA").exists():
    return "state/_METADATA is missing"
  damage = _json_file_damage(step_dir / "state" / "_METADATA")
  if damage:
    return damage
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
  after a full disk; finished steps are never touched. Returns the names removed.

  TensorStore can still be finishing writes of the failed save into them (each fails in turn),
  so a removal that meets a file written meanwhile is tried again.
  """
  removed = []
  if jax.process_index() == 0 and manager.directory.exists():
    for path in manager.directory.iterdir():
      if ".orbax-checkpoint-tmp" in path.name:
        for attempt in range(5):
          try:
            path.rmtree()
            break
          except FileNotFoundError:
            break
          except OSError:  # "Directory not empty": a late write landed
            time.sleep(0.1 * (attempt + 1))
        if not path.exists():
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
    read, reason = _read_whole(step_dir, lambda step_dir=step_dir: read_generator(step_dir, which))
    if reason is not None:
      failures.append((step_dir, reason))
      continue
    params, meta = read
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
