"""PyTorch .pth and .safetensors files in and out, and the state dict <-> Flax tree mapping.

`read_state_dict` picks the reader by the file's suffix, so every importer takes both. Only the
.pth reader and writer import torch, and only the .safetensors ones import safetensors, lazily:
training, evaluation and the upscaler never need either. The per-network modules describe each
tensor as an `Entry` (where it lives in both worlds and how its layout changes);
`import_entries` and `export_entries` check keys and shapes against those and move the arrays.
"""

import io
import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import traverse_util

from esrgan_jax.weights.store import (CheckpointError, describe_error, has_suffix, import_for,
                                      refuse_existing, write_bytes)
from esrgan_jax.weights.trees import describe_key_mismatch, preview

# BasicSR's training saves both; the EMA copy is the one its inference and Real-ESRGAN's use.
WRAPPER_KEYS = ("params_ema", "params")
# torch.save writes a zip archive; files from before PyTorch 1.6 are a bare pickle (protocol 2+).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"
SAFETENSORS_SUFFIX = ".safetensors"
# Used only for files with bfloat16 tensors, which safetensors' NumPy reader refuses; the format
# is little-endian.
_SAFETENSORS_DTYPES = {"BF16": jnp.bfloat16, "F16": np.dtype("<f2"), "F32": np.dtype("<f4"),
                       "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
                       "U8": np.dtype("u1"), "BOOL": np.dtype(bool)}


class Entry(NamedTuple):
  """One tensor: where it lives in the Flax tree and the state dict, and how it is laid out."""
  path: tuple[str, ...]
  key: str
  shape: tuple[int, ...]  # Flax shape
  to_flax: Callable[[np.ndarray], np.ndarray]
  to_torch: Callable[[np.ndarray], np.ndarray]


def same(x):
  return x


def conv_kernel_from_torch(weight):
  """(out, in, kh, kw) -> Flax HWIO."""
  return np.transpose(weight, (2, 3, 1, 0))


def conv_kernel_to_torch(kernel):
  return np.transpose(kernel, (3, 2, 0, 1))


def leaf_entry(path, key_prefix, shape) -> Entry:
  """Conv/Dense kernel or bias with torch's default names and layouts."""
  leaf = path[-1]
  if leaf == "bias":
    return Entry(path, f"{key_prefix}.bias", shape, same, same)
  if leaf == "kernel" and len(shape) == 4:
    return Entry(path, f"{key_prefix}.weight", shape, conv_kernel_from_torch, conv_kernel_to_torch)
  if leaf == "kernel" and len(shape) == 2:
    return Entry(path, f"{key_prefix}.weight", shape, np.transpose, np.transpose)
  raise AssertionError(f"no torch name for Flax variable {'/'.join(path)}")


def as_numpy(value, key: str, source: str) -> np.ndarray:
  """A torch tensor or array as a float32 (or integer) NumPy array; anything else is an error."""
  if hasattr(value, "detach"):  # a torch tensor: float16/bfloat16 are widened for numpy
    value = value.detach().cpu()
    value = (value.float() if value.is_floating_point() else value).numpy()
  if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
    raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
  return np.asarray(value)


def shape_of(state_dict, key: str, source: str, model: str, ndim: int = 4) -> tuple[int, ...]:
  """The shape of one conv weight that tells a network's architecture."""
  if key not in state_dict:
    raise CheckpointError(f"{source}: not a {model} state dict: {key} is missing "
                          f"(keys: {preview(state_dict)})")
  shape = tuple(getattr(state_dict[key], "shape", ()))
  if len(shape) != ndim:
    raise CheckpointError(f"{source}: {key} has shape {shape}, expected a {ndim}-d conv weight")
  return shape


def missing_and_unexpected(expected, found, noun: str) -> str | None:
  """'missing {noun} a, b; unexpected {noun} c' (up to five names each), or None."""
  return describe_key_mismatch(expected, found,
                               only_in_first=lambda names: f"missing {noun} {preview(names)}",
                               only_in_second=lambda names: f"unexpected {noun} {preview(names)}")


def unwrap_state_dict(checkpoint: Any, source: str = "state dict",
                      weights_key: str | None = None) -> dict[str, Any]:
  """Returns the bare state dict inside a checkpoint.

  BasicSR / Real-ESRGAN files wrap it as {'params': sd} and/or {'params_ema': sd}; `weights_key`
  picks one, and by default params_ema is preferred. A `module.` prefix (DataParallel) is dropped.
  """
  if not isinstance(checkpoint, Mapping):
    raise CheckpointError(f"{source}: expected a state dict (a dict of tensors), found a "
                          f"{type(checkpoint).__name__}")
  wrapped = [k for k in WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)]
  if weights_key is not None:
    if weights_key not in WRAPPER_KEYS:
      raise CheckpointError(f"{source}: weights_key must be one of {WRAPPER_KEYS}, "
                            f"got {weights_key!r}")
    if weights_key not in wrapped:
      found = f"entries {wrapped}" if wrapped else "a bare state dict"
      raise CheckpointError(f"{source}: has no {weights_key!r} entry (found {found})")
    state = checkpoint[weights_key]
  elif wrapped:
    state = checkpoint[wrapped[0]]
  else:
    state = checkpoint
  bad_keys = [k for k in state if not isinstance(k, str)]
  if bad_keys or not state:
    raise CheckpointError(f"{source}: not a state dict (keys {preview(map(repr, state))})")
  if all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  return dict(state)


def import_entries(state_dict, entries, source: str, description: str,
                   ignore=lambda key: False) -> dict:
  """Checks keys and shapes against `entries`, then builds the (unflattened) Flax tree."""
  mismatch = missing_and_unexpected([entry.key for entry in entries],
                                    [k for k in state_dict if not ignore(k)], "key(s)")
  if mismatch:
    raise CheckpointError(f"{source}: state dict does not fit {description}: {mismatch}")
  flat = {}
  for entry in entries:
    value = as_numpy(state_dict[entry.key], entry.key, source)
    torch_shape = entry.to_torch(np.empty(entry.shape, np.float32)).shape
    if value.shape != torch_shape:
      raise CheckpointError(f"{source}: {entry.key} has shape {tuple(value.shape)}, "
                            f"{description} needs {tuple(torch_shape)}")
    flat[entry.path] = np.ascontiguousarray(entry.to_flax(value.astype(np.float32)))
  return traverse_util.unflatten_dict(flat)


def export_entries(tree, entries, description: str) -> dict[str, np.ndarray]:
  """The Flax tree as a state dict of float32 NumPy arrays with the entries' torch names."""
  flat = traverse_util.flatten_dict(tree)
  mismatch = missing_and_unexpected(["/".join(entry.path) for entry in entries],
                                    ["/".join(path) for path in flat], "parameter(s)")
  if mismatch:
    raise CheckpointError(f"parameters do not fit {description}: {mismatch}")
  state = {}
  for entry in entries:
    value = np.asarray(flat[entry.path], np.float32)
    if value.shape != entry.shape:
      raise CheckpointError(f"parameter {'/'.join(entry.path)} has shape {value.shape}, "
                            f"{description} needs {entry.shape}")
    state[entry.key] = np.array(entry.to_torch(value), np.float32, order="C")  # own, writable
  return state


def _import_torch(path):
  return import_for(path, "torch", "reading or writing .pth files needs PyTorch "
                    "(pip install torch); nothing else in esrgan_jax does")


def _read_bytes(path, kind: str) -> bytes:
  """The whole of a local or gs:// file, refusing a missing, directory or empty one."""
  file = epath.Path(path)
  if not file.exists():
    raise CheckpointError(f"{path}: no such file")
  if file.is_dir():
    raise CheckpointError(f"{path}: is a directory, expected {kind}")
  data = file.read_bytes()
  if not data:
    raise CheckpointError(f"{path}: is empty, expected {kind}")
  return data


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
  """torch.load of a local or gs:// file on CPU, with tensors only (weights_only=True)."""
  torch = _import_torch(path)
  data = _read_bytes(path, "a PyTorch .pth file")
  if not data.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (it starts with {data[:8]!r}; "
                          "torch.save writes a zip archive or a pickle)")
  try:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises many types for damaged files.
    if "Weights only load failed" in str(error):
      raise CheckpointError(f"{path}: holds Python objects besides tensors, which are not "
                            "loaded for safety (torch.load weights_only=True)") from error
    raise CheckpointError(f"{path}: damaged or truncated PyTorch checkpoint "
                          f"({describe_error(error)})") from error


def is_safetensors_path(path: str | os.PathLike) -> bool:
  return has_suffix(path, SAFETENSORS_SUFFIX)


def _import_safetensors(path):
  return import_for(path, "safetensors.numpy", "reading or writing .safetensors files needs the "
                    "safetensors package (pip install safetensors)")


def _bfloat16_tolerant_load(safetensors, data: bytes) -> dict[str, np.ndarray]:
  """safetensors.numpy.load, which knows no bfloat16; such files are read with ml_dtypes' type."""
  try:
    return safetensors.numpy.load(data)
  except KeyError as error:  # safetensors.numpy's dtype table has no entry for this dtype
    if error.args != ("BF16",):
      raise
  arrays = {}
  for name, view in safetensors.deserialize(data):
    dtype = _SAFETENSORS_DTYPES.get(view["dtype"])
    if dtype is None:
      raise KeyError(view["dtype"])
    arrays[name] = np.frombuffer(view["data"], dtype).reshape(view["shape"])
  return arrays


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The flat dict of NumPy arrays in a local or gs:// .safetensors file (float16 and bfloat16
  tensors keep their dtype; importers widen them to float32)."""
  safetensors = _import_safetensors(path)
  data = _read_bytes(path, "a .safetensors file")
  try:
    return _bfloat16_tolerant_load(safetensors, data)
  except KeyError as error:
    raise CheckpointError(f"{path}: holds {error.args[0]} tensors, which NumPy cannot read"
                          ) from error
  except safetensors.SafetensorError as error:
    raise CheckpointError(f"{path}: damaged or truncated .safetensors file "
                          f"({describe_error(error)})") from error


def read_state_dict(path: str | os.PathLike, weights_key: str | None = None) -> dict[str, Any]:
  """The bare state dict of a .pth or (by its suffix) .safetensors file; see `unwrap_state_dict`."""
  reader = read_safetensors if is_safetensors_path(path) else read_torch_checkpoint
  return unwrap_state_dict(reader(path), str(path), weights_key)


def write_torch_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
  """torch.save of a (possibly nested) dict of numpy arrays; refuses to overwrite."""
  torch = _import_torch(path)
  refuse_existing(path, "output file")

  def to_torch(tree):
    if isinstance(tree, Mapping):
      return {k: to_torch(v) for k, v in tree.items()}
    return torch.from_numpy(np.array(tree, np.float32))

  buffer = io.BytesIO()
  torch.save(to_torch(state), buffer)
  write_bytes(path, buffer.getvalue())


def write_safetensors(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
  """A flat state dict of arrays as a float32 .safetensors file; refuses to overwrite."""
  safetensors = _import_safetensors(path)
  refuse_existing(path, "output file")
  nested = [key for key, value in state.items() if isinstance(value, Mapping)]
  if nested:
    raise CheckpointError(f"{path}: a .safetensors file holds one flat dict of tensors, but "
                          f"entries {preview(nested)} are dicts (write a bare state dict)")
  arrays = {key: np.array(value, np.float32, order="C") for key, value in state.items()}
  write_bytes(path, safetensors.numpy.save(arrays))


def write_state_dict(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
  """write_safetensors for a .safetensors path, else write_torch_checkpoint."""
  writer = write_safetensors if is_safetensors_path(path) else write_torch_checkpoint
  writer(path, state)
