"""The one on-disk form of converted weights: a `params` tree plus one JSON entry saying what it is.

Generator checkpoints (JSON `arch`), VGG19, LPIPS and discriminator weights (JSON `meta`) all use
it. It is an Orbax composite checkpoint, written atomically, readable locally or from gs://:
  DIR/params      the parameter tree (float32)
  DIR/<entry>     JSON
Every failure to read or write one is a one-line `CheckpointError` naming the path.
"""

import importlib
import os
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from esrgan_jax import cli
from esrgan_jax.weights import checkpoints

_MESSAGE_CHARS = 200


class CheckpointError(cli.UserError, ValueError):
  """A weights file or directory that cannot be read, written or does not fit; names the path."""


def describe_error(error: Exception) -> str:
  """'Type: first line of the message', for one-line errors that wrap another."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:_MESSAGE_CHARS] if lines else ''}"


def has_suffix(path: str | os.PathLike, suffix: str) -> bool:
  """Whether `path` ends in `suffix` (lower case), in any case: what tells the file formats apart."""
  return str(path).lower().endswith(suffix)


def import_for(path: str | os.PathLike, module: str, need: str):
  """`import module`, which reading or writing `path` needs; without it, a CheckpointError
  "PATH: NEED" (NEED says what to install). Returns the top-level package, as `import a.b` binds
  `a`: the optional packages are imported only when a file of theirs is met."""
  try:
    importlib.import_module(module)
  except ImportError as error:
    raise CheckpointError(f"{path}: {need}") from error
  return sys.modules[module.split(".")[0]]


def refuse_existing(path: str | os.PathLike, what: str = "output directory") -> None:
  """Raised before any work, so a long conversion never ends by failing to write: `path`
  exists, or a file stands where one of its (local) parent folders would go."""
  if epath.Path(path).exists():
    raise CheckpointError(f"{path}: {what} already exists")
  if "://" not in os.fspath(path):  # local: gs:// has no folders to be in the way
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
      parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
      raise CheckpointError(f"{path}: cannot write here ({parent} is a file, not a folder)")


def make_parent(path: str | os.PathLike) -> None:
  """Creates the parent directory of `path`; a read-only or missing place is a one-line error."""
  try:
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise CheckpointError(f"{path}: cannot write here ({describe_error(error)})") from error


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes one file (local or gs://), making its parent; any failure is a one-line error."""
  make_parent(path)
  try:
    epath.Path(path).write_bytes(data)
  except OSError as error:
    raise CheckpointError(f"{path}: cannot write here ({describe_error(error)})") from error


def has_params_and_json(directory: str | os.PathLike, json_entry: str) -> bool:
  path = epath.Path(directory)
  return (path / "params").exists() and (path / json_entry).exists()


def save(directory: str | os.PathLike, params, json_entry: str, value: dict[str, Any],
         what: str = "output directory") -> None:
  """Writes `params` (as float32) and the JSON `value` to a new `directory`, atomically."""
  refuse_existing(directory, what)
  make_parent(directory)
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  try:
    ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
        checkpoints.orbax_path(directory),
        ocp.args.Composite(params=ocp.args.StandardSave(params),
                           **{json_entry: ocp.args.JsonSave(value)}))
  except Exception as error:  # Orbax wraps a read-only or full destination in several types.
    raise CheckpointError(f"{directory}: cannot write {what} ({describe_error(error)})") from error


def restore(directory: str | os.PathLike, json_entry: str, what: str) -> tuple[Any, dict[str, Any]]:
  """(params, JSON value) written by `save`; any failure names DIR and `what`."""
  path = epath.Path(directory)
  try:
    restored = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(
        checkpoints.orbax_path(path),
        ocp.args.Composite(params=ocp.args.StandardRestore(),
                           **{json_entry: ocp.args.JsonRestore()}))
  except Exception as error:  # Orbax raises many types for damaged files.
    raise CheckpointError(f"{path}: unreadable {what} ({describe_error(error)})") from error
  return restored["params"], restored[json_entry]


def open_directory(directory: str | os.PathLike, json_entry: str, what: str,
                   written_by: str) -> epath.Path:
  """The path of an existing store directory, or a one-line error saying how to make one."""
  path = epath.Path(directory)
  if not path.exists():
    raise CheckpointError(f"{path}: no such {what} directory")
  if not path.is_dir():
    raise CheckpointError(f"{path}: is a file, not a {what} directory (write one with "
                          f"`{written_by}`)")
  if not has_params_and_json(path, json_entry):
    raise CheckpointError(f"{path}: not a converted {what} directory (expected 'params' and "
                          f"'{json_entry}' entries, as written by {written_by})")
  return path
