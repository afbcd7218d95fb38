"""pytorch-fid's FID Inception weights (`pt_inception-2015-12-05-6726825d.pth`) in Flax form.

Convert the file once (it is the PyTorch port of TF's 2015 Inception graph that FID is defined on):
  python -m esrgan_jax.convert --inception pt_inception-2015-12-05-6726825d.pth INCEPTION_DIR
then `load_inception_variables(INCEPTION_DIR)` gives the variables of `InceptionV3FID` without
torch; a .pth path works too and is converted on the fly (that imports torch).
The map is a rename: `A.B.conv.weight` (OIHW) -> params A/B/conv/kernel (HWIO),
`A.B.bn.{weight, bias}` -> params A/B/bn/{scale, bias}, `A.B.bn.running_{mean, var}` ->
batch_stats A/B/bn/{mean, var}, `fc.weight` (out, in) -> params fc/kernel (in, out), `fc.bias`.
`num_batches_tracked` counters carry nothing the network uses and are dropped; any other extra or
missing key is an error. Layout (an Orbax composite checkpoint):
  DIR/params  {"params": ..., "batch_stats": ...} of InceptionV3FID, float32
  DIR/meta    JSON {"model": "InceptionV3FID", "source": "pt_inception-2015-12-05"}
"""

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from esrgan_jax.models.inception import InceptionV3FID
from esrgan_jax.weights import store, torch_io
from esrgan_jax.weights.store import CheckpointError

MODEL_NAME = "InceptionV3FID"
SOURCE = "pt_inception-2015-12-05"
IGNORED_SUFFIX = ".num_batches_tracked"
# (collection, flax leaf) -> torch parameter name, per kind of layer.
_TORCH_LEAF = {
    ("params", "conv", "kernel"): "weight",
    ("params", "bn", "scale"): "weight",
    ("params", "bn", "bias"): "bias",
    ("batch_stats", "bn", "mean"): "running_mean",
    ("batch_stats", "bn", "var"): "running_var",
    ("params", "fc", "kernel"): "weight",
    ("params", "fc", "bias"): "bias",
}


@functools.cache
def inception_variable_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, module, ..., leaf): shape} of every InceptionV3FID variable."""
  shapes = jax.eval_shape(InceptionV3FID().init, jax.random.key(0),
                          jnp.zeros((1, 75, 75, 3), jnp.float32))
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def torch_key(path: tuple[str, ...]) -> str:
  """The pytorch-fid state-dict key of the Flax variable at `path`."""
  collection, *modules, layer, leaf = path
  return ".".join([*modules, layer, _TORCH_LEAF[(collection, layer, leaf)]])


def _preview(keys: list[str], limit: int = 4) -> str:
  shown = ", ".join(keys[:limit])
  return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def inception_variables_from_torch(state: Mapping[str, Any], source: str = "state dict") -> dict:
  """{"params", "batch_stats"} of InceptionV3FID from pytorch-fid's Inception state dict.

  A state dict that does not match key for key and shape for shape raises one CheckpointError
  naming `source` and the missing / unexpected / misshapen keys.
  """
  expected = {torch_key(path): (path, shape) for path, shape in inception_variable_shapes().items()}
  given = {k for k in state if not k.endswith(IGNORED_SUFFIX)}
  missing = sorted(set(expected) - given)
  unexpected = sorted(given - set(expected))
  if missing or unexpected:
    parts = [f"missing keys {_preview(missing)}" if missing else "",
             f"unexpected keys {_preview(unexpected)}" if unexpected else ""]
    raise CheckpointError(f"{source}: not pytorch-fid's FID Inception state dict: "
                          + "; ".join(p for p in parts if p))
  variables: dict = {}
  for key, (path, shape) in expected.items():
    value = np.asarray(state[key].numpy() if hasattr(state[key], "numpy") else state[key],
                       np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif value.ndim == 2:
      value = value.T
    if value.shape != shape:
      raise CheckpointError(f"{source}: {key} has shape {tuple(np.shape(state[key]))}, which does "
                            f"not give the Flax shape {shape}")
    node = variables
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return variables


def check_inception_variables(variables, source: str) -> None:
  """Raises CheckpointError naming `source` unless every variable is there with its shape."""
  for path, shape in inception_variable_shapes().items():
    node = variables
    for name in path:
      node = node.get(name) if hasattr(node, "get") else None
      if node is None:
        raise CheckpointError(f"{source}: Inception variables lack {'/'.join(path)}")
    if tuple(np.shape(node)) != shape:
      raise CheckpointError(f"{source}: Inception {'/'.join(path)} has shape "
                            f"{tuple(np.shape(node))}, needs {shape}")


def save_inception_variables(directory: str | os.PathLike, variables) -> None:
  """Writes converted Inception variables to a new directory."""
  path = epath.Path(directory)
  check_inception_variables(variables, str(path))
  store.save(path, variables, "meta", {"model": MODEL_NAME, "source": SOURCE})


def _read_torch_variables(path: str | os.PathLike) -> dict:
  state = torch_io.read_torch_checkpoint(path)
  if not isinstance(state, Mapping):
    raise CheckpointError(f"{path}: expected a state dict (a dict of tensors), found a "
                          f"{type(state).__name__}")
  return inception_variables_from_torch(state, str(path))


def convert_inception(in_path: str | os.PathLike, out_dir: str | os.PathLike) -> None:
  """pytorch-fid's .pth -> a converted directory; what `convert --inception IN OUT` runs."""
  store.refuse_existing(out_dir, "output directory")  # before reading, so no long read is wasted
  save_inception_variables(out_dir, _read_torch_variables(in_path))


def load_inception_variables(path: str | os.PathLike) -> dict:
  """InceptionV3FID variables from a directory written by `save_inception_variables` or a .pth."""
  path = epath.Path(path)
  if not path.exists():
    raise CheckpointError(f"{path}: no such Inception weights file or directory")
  if not path.is_dir():
    return _read_torch_variables(path)
  if not store.has_params_and_json(path, "meta"):
    raise CheckpointError(f"{path}: not a converted Inception directory (expected 'params' and "
                          "'meta' entries, as written by python -m esrgan_jax.convert --inception)")
  variables, meta = store.restore(path, "meta", "Inception weights")
  if meta.get("model") != MODEL_NAME:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r}, not {MODEL_NAME}")
  check_inception_variables(variables, str(path))
  return variables
