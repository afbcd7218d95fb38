"""Training checkpoints: one Orbax CheckpointManager per workdir, resume, and reading them back.

Layout: WORKDIR/checkpoints/<step>/{state, meta}. `state` is the TrainState without the frozen
VGG19 weights; `meta` is JSON with the generator architecture and stage, so a generator can be
loaded from a training run without its config. Orbax writes each step to a temporary directory and
renames it when complete, so a kill mid-save never leaves an unreadable latest checkpoint.
"""

import logging
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

CHECKPOINT_SUBDIR = "checkpoints"
BEST_METRIC = "eval_psnr"


class _DropOrbaxDetail(logging.Filter):
  """Orbax logs a dozen INFO lines for every save; its warnings and errors still pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
    return not (from_orbax and record.levelno < logging.WARNING)


def quiet_orbax_logs(handler: logging.Handler) -> None:
  if not any(isinstance(f, _DropOrbaxDetail) for f in handler.filters):
    handler.addFilter(_DropOrbaxDetail())


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


def find_step_directory(path: str | os.PathLike, step: Optional[int] = None) -> epath.Path:
  """Accepts a workdir, its checkpoints/ directory or one step's directory."""
  path = orbax_path(path)
  if (path / "state").exists() and (path / "meta").exists():
    return path
  if (path / CHECKPOINT_SUBDIR).exists():
    path = path / CHECKPOINT_SUBDIR
  steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []
  if not steps:
    raise FileNotFoundError(f"{path}: no training checkpoint found")
  if step is None:
    return path / str(steps[-1])
  if step not in steps:
    raise FileNotFoundError(f"{path}: no checkpoint of step {step} (found steps {steps})")
  return path / str(step)


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
