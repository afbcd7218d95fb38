"""Stand-alone generator checkpoints: RRDBNet params plus the architecture that reads them.

Written by `convert.py` (PyTorch import) and `interpolate.py`; read by the upscaler, eval mode
and stage 2's initialisation, which also accept a training workdir (see `load_generator`).
Layout (an Orbax composite checkpoint):
  DIR/params  the RRDBNet parameter tree (float32)
  DIR/arch    JSON {num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch}
The converted VGG19 and LPIPS weights use the same layout with a `meta` entry, through the
params-plus-JSON helpers here, which also hold the one CheckpointError of the package.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from esrgan_jax import checkpoints
from esrgan_jax.models import RRDBNet

ARCH_FIELDS = ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "num_grow_ch")


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not fit; the message names the path."""


# ------------------------------------------------------------------------------------------------
# The layout shared by generator checkpoints and the converted VGG19 and LPIPS weights: an Orbax
# composite of a `params` tree and one JSON entry that says what the params are.


def has_params_and_json(directory: str | os.PathLike, json_entry: str) -> bool:
  path = epath.Path(directory)
  return (path / "params").exists() and (path / json_entry).exists()


def save_params_and_json(directory: str | os.PathLike, params, json_entry: str,
                         value: dict[str, Any]) -> None:
  """Writes `params` and the JSON `value` (under `json_entry`) atomically to `directory`."""
  ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
      checkpoints.orbax_path(directory),
      ocp.args.Composite(params=ocp.args.StandardSave(params),
                         **{json_entry: ocp.args.JsonSave(value)}))


def restore_params_and_json(directory: str | os.PathLike, json_entry: str,
                            what: str) -> tuple[Any, dict[str, Any]]:
  """(params, JSON value) written by `save_params_and_json`.

  Any failure becomes a one-line CheckpointError "DIR: unreadable {what} (Type: first line)".
  """
  path = epath.Path(directory)
  try:
    restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(
        checkpoints.orbax_path(path),
        ocp.args.Composite(params=ocp.args.StandardRestore(),
                           **{json_entry: ocp.args.JsonRestore()}))
  except Exception as error:  # Orbax raises many types for damaged files.
    raise CheckpointError(f"{path}: unreadable {what} ({describe_error(error)})") from error
  return restored["params"], restored[json_entry]


def describe_error(error: Exception) -> str:
  """'Type: first line of the message', for one-line errors that wrap another."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0] if lines else ''}"


# ------------------------------------------------------------------------------------------------
# Generator checkpoints.


def arch_of(model: RRDBNet) -> dict[str, int]:
  return {field: int(getattr(model, field)) for field in ARCH_FIELDS}


def generator_from_arch(arch: dict[str, Any], **module_kwargs) -> RRDBNet:
  missing = [f for f in ARCH_FIELDS if f not in arch]
  if missing:
    raise CheckpointError(f"generator architecture is missing field(s) {missing}")
  return RRDBNet(**{f: int(arch[f]) for f in ARCH_FIELDS}, **module_kwargs)


def save_generator(directory: str | os.PathLike, params, arch: dict[str, Any]) -> None:
  """Writes `params` and `arch` atomically to `directory` (local path or gs://)."""
  path = epath.Path(directory)
  if path.exists():
    raise CheckpointError(f"{path}: output checkpoint directory already exists")
  generator_from_arch(arch)  # validates the fields before anything is written
  params = jax.tree.map(lambda x: jax.numpy.asarray(x, jax.numpy.float32), params)
  save_params_and_json(path, params, "arch", dict(arch))


def is_generator_checkpoint(directory: str | os.PathLike) -> bool:
  return has_params_and_json(directory, "arch")


def load_generator(directory: str | os.PathLike,
                   which: str = "generator_ema") -> tuple[dict, dict[str, int]]:
  """Returns (params, arch), with a one-line error naming the path when that fails.

  `directory` is a generator checkpoint, or a training workdir / its checkpoints directory / one
  step of it, from which the latest step's `which` generator ('generator_ema' or 'generator') is
  read.
  """
  path = epath.Path(directory)
  if not path.exists():
    raise CheckpointError(f"{path}: no such checkpoint directory")
  if not path.is_dir():
    raise CheckpointError(f"{path}: is a file, not a checkpoint directory (convert PyTorch .pth "
                          "files first with `python -m esrgan_jax.convert IN.pth OUT_DIR`)")
  if not is_generator_checkpoint(path):
    return _load_from_training_checkpoint(path, which)
  params, arch = restore_params_and_json(path, "arch", "generator checkpoint")
  arch = {f: int(v) for f, v in arch.items()}
  generator_from_arch(arch)
  return params, arch


def _load_from_training_checkpoint(path: epath.Path, which: str) -> tuple[dict, dict[str, int]]:
  try:
    step_dir = checkpoints.find_step_directory(path)
  except FileNotFoundError as error:
    raise CheckpointError(f"{path}: neither a generator checkpoint ('params' and 'arch' entries, "
                          "as written by esrgan_jax.convert) nor a training workdir with "
                          "checkpoints") from error
  try:
    params, meta = checkpoints.read_generator(step_dir, which)
  except Exception as error:  # Orbax raises many types for damaged files.
    raise CheckpointError(f"{step_dir}: unreadable training checkpoint "
                          f"({describe_error(error)})") from error
  arch = {f: int(v) for f, v in meta["arch"].items()}
  generator_from_arch(arch)
  return params, arch
