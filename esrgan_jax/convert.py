"""PyTorch <-> Flax weights: ESRGAN/BasicSR/Real-ESRGAN generators, both discriminators, VGG19.

The conversion functions are pure: they take a state dict (a dict of numpy arrays or torch tensors)
and return Flax variable trees of numpy arrays, or the reverse. Only `read_torch_checkpoint` and
`write_torch_checkpoint` touch .pth files, and they import torch lazily, so nothing here needs torch
at import time.

Generator state dicts come in three key layouts, all read into the one Flax RRDBNet:
  basicsr          conv_first, body.N.rdb1.conv1, conv_body, conv_up1, conv_up2, conv_hr, conv_last
                   (BasicSR and Real-ESRGAN; x2/x1 models fold pixels into conv_first's channels)
  esrgan           conv_first, RRDB_trunk.N.RDB1.conv1, trunk_conv, upconv1, upconv2, HRconv,
                   conv_last (the ESRGAN repository's RRDBNet_arch, x4)
  esrgan_original  model.0, model.1.sub.N.RDB1.conv1.0, model.1.sub.{num_block} (trunk conv),
                   model.3, model.6, model.8, model.10 (the released RRDB_ESRGAN_x4.pth)

Command line:
  python -m esrgan_jax.convert IN.pth OUT_DIR             generator -> generator_io checkpoint
  python -m esrgan_jax.convert --vgg19 IN.pth OUT_DIR     torchvision vgg19 -> vgg19_weights dir
  python -m esrgan_jax.convert --export CKPT_DIR OUT.pth  generator checkpoint -> BasicSR .pth
"""

import argparse
import io
import os
import re
import sys
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import traverse_util

from esrgan_jax import generator_io
from esrgan_jax.generator_io import CheckpointError
from esrgan_jax.models import UNetDiscriminatorSN, VGGStyleDiscriminator, VGG19Features
from esrgan_jax.models.vgg19 import TORCHVISION_FEATURE_INDEX, VGG19_LAYERS

BASICSR, ESRGAN, ESRGAN_ORIGINAL = "basicsr", "esrgan", "esrgan_original"
LAYOUTS = (BASICSR, ESRGAN, ESRGAN_ORIGINAL)
# BasicSR's training saves both; the EMA copy is the one its inference and Real-ESRGAN's use.
WRAPPER_KEYS = ("params_ema", "params")
# conv_first's input channels are num_in_ch times this fold (pixel-unshuffle by 4 // scale).
SCALE_CHANNEL_FOLD = {4: 1, 2: 4, 1: 16}
_KEYS_SHOWN = 5

_ESRGAN_NAMES = {"conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up1": "upconv1",
                 "conv_up2": "upconv2", "conv_hr": "HRconv", "conv_last": "conv_last"}
# Indices in the original flat Sequential; the trunk conv sits at model.1.sub.{num_block}.
_ORIGINAL_NAMES = {"conv_first": "model.0", "conv_up1": "model.3", "conv_up2": "model.6",
                   "conv_hr": "model.8", "conv_last": "model.10"}
# (regex of block 0's first conv with the block index as group 1, first conv, last conv).
_LAYOUT_KEYS = {
    BASICSR: (r"body\.(\d+)\.rdb1\.conv1\.weight", "conv_first.weight", "conv_last.weight"),
    ESRGAN: (r"RRDB_trunk\.(\d+)\.RDB1\.conv1\.weight", "conv_first.weight", "conv_last.weight"),
    ESRGAN_ORIGINAL: (r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight", "model.0.weight",
                      "model.10.weight"),
}


class _Entry(NamedTuple):
  """One tensor: where it lives in the Flax tree and the state dict, and how it is laid out."""
  path: tuple[str, ...]
  key: str
  shape: tuple[int, ...]  # Flax shape
  to_flax: Callable[[np.ndarray], np.ndarray]
  to_torch: Callable[[np.ndarray], np.ndarray]


def _same(x):
  return x


def conv_kernel_from_torch(weight):
  """(out, in, kh, kw) -> Flax HWIO."""
  return np.transpose(weight, (2, 3, 1, 0))


def conv_kernel_to_torch(kernel):
  return np.transpose(kernel, (3, 2, 0, 1))


def _leaf_entry(path, key_prefix, shape):
  """Conv/Dense kernel or bias with torch's default names and layouts."""
  leaf = path[-1]
  if leaf == "bias":
    return _Entry(path, f"{key_prefix}.bias", shape, _same, _same)
  if leaf == "kernel" and len(shape) == 4:
    return _Entry(path, f"{key_prefix}.weight", shape, conv_kernel_from_torch,
                  conv_kernel_to_torch)
  if leaf == "kernel" and len(shape) == 2:
    return _Entry(path, f"{key_prefix}.weight", shape, np.transpose, np.transpose)
  raise AssertionError(f"no torch name for Flax variable {'/'.join(path)}")


def _flat_shapes(module, input_shape, **kwargs) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, module..., leaf): shape} of a module's variables, without computing anything."""
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                                 jnp.zeros(input_shape, jnp.float32), **kwargs))
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(variables).items()}


# ------------------------------------------------------------------------------------------------
# Reading state dicts.


def _as_numpy(value, key, source):
  if hasattr(value, "detach"):  # a torch tensor: float16/bfloat16 are widened for numpy
    value = value.detach().cpu()
    value = (value.float() if value.is_floating_point() else value).numpy()
  if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
    raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
  return np.asarray(value)


def _preview(keys):
  keys = list(keys)
  shown = ", ".join(keys[:_KEYS_SHOWN])
  return shown + (f", ... ({len(keys)} in all)" if len(keys) > _KEYS_SHOWN else "")


def describe_key_mismatch(first: Sequence[str], second: Sequence[str],
                          only_in_first: Callable[[list[str]], str],
                          only_in_second: Callable[[list[str]], str]) -> str | None:
  """How two key lists differ, or None when they hold the same keys.

  `only_in_first` words the keys of `first` that `second` lacks (e.g. keys a state dict misses),
  `only_in_second` the reverse; both lists keep their order and the parts are joined by '; '.
  """
  first_set, second_set = set(first), set(second)
  parts = []
  if in_first := [k for k in first if k not in second_set]:
    parts.append(only_in_first(in_first))
  if in_second := [k for k in second if k not in first_set]:
    parts.append(only_in_second(in_second))
  return "; ".join(parts) or None


def _missing_and_unexpected(expected, found, noun):
  """'missing {noun} a, b; unexpected {noun} c' (up to five names each), or None."""
  return describe_key_mismatch(expected, found,
                               only_in_first=lambda names: f"missing {noun} {_preview(names)}",
                               only_in_second=lambda names: f"unexpected {noun} {_preview(names)}")


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
    raise CheckpointError(f"{source}: not a state dict (keys {_preview(map(repr, state))})")
  if all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  return dict(state)


def _import(state_dict, entries, source, description, ignore=lambda key: False):
  """Checks keys and shapes against `entries`, then builds the (unflattened) Flax tree."""
  mismatch = _missing_and_unexpected([entry.key for entry in entries],
                                     [k for k in state_dict if not ignore(k)], "key(s)")
  if mismatch:
    raise CheckpointError(f"{source}: state dict does not fit {description}: {mismatch}")
  flat = {}
  for entry in entries:
    value = _as_numpy(state_dict[entry.key], entry.key, source)
    torch_shape = entry.to_torch(np.empty(entry.shape, np.float32)).shape
    if value.shape != torch_shape:
      raise CheckpointError(f"{source}: {entry.key} has shape {tuple(value.shape)}, "
                            f"{description} needs {tuple(torch_shape)}")
    flat[entry.path] = np.ascontiguousarray(entry.to_flax(value.astype(np.float32)))
  return traverse_util.unflatten_dict(flat)


def _export(tree, entries, description) -> dict[str, np.ndarray]:
  flat = traverse_util.flatten_dict(tree)
  mismatch = _missing_and_unexpected(["/".join(entry.path) for entry in entries],
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


# ------------------------------------------------------------------------------------------------
# RRDBNet (the generator).


def detect_rrdbnet_layout(state_dict: Mapping[str, Any], source: str = "state dict") -> str:
  """Which of LAYOUTS a generator state dict uses, from its key names."""
  keys = list(state_dict)
  if "conv_first.weight" in state_dict:
    if "trunk_conv.weight" in state_dict or any(k.startswith("RRDB_trunk.") for k in keys):
      return ESRGAN
    return BASICSR
  if "model.0.weight" in state_dict and any(k.startswith("model.1.sub.") for k in keys):
    return ESRGAN_ORIGINAL
  raise CheckpointError(f"{source}: not an RRDBNet (ESRGAN generator) state dict: it has neither "
                        f"conv_first.weight nor model.0.weight (keys: {_preview(keys)})")


def _shape_of(state_dict, key, source, model="RRDBNet", ndim=4):
  if key not in state_dict:
    raise CheckpointError(f"{source}: not a {model} state dict: {key} is missing "
                          f"(keys: {_preview(state_dict)})")
  shape = tuple(getattr(state_dict[key], "shape", ()))
  if len(shape) != ndim:
    raise CheckpointError(f"{source}: {key} has shape {shape}, expected a {ndim}-d conv weight")
  return shape


def infer_rrdbnet_arch(state_dict: Mapping[str, Any], source: str = "state dict",
                       layout: str | None = None, scale: int | None = None) -> dict[str, int]:
  """num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch of a generator state dict.

  BasicSR's x2 and x1 models pixel-unshuffle the input by 2 or 4 first, so conv_first takes 4x or
  16x the image channels: with 3-channel output, 3 -> x4, 12 -> x2, 48 -> x1 (input channels are
  assumed to equal output channels unless `scale` is given). ESRGAN's own layouts are x4 only.
  """
  layout = layout or detect_rrdbnet_layout(state_dict, source)
  block_pattern, first_key, last_key = _LAYOUT_KEYS[layout]
  blocks = sorted((int(m.group(1)), key) for key in state_dict
                  if (m := re.fullmatch(block_pattern, key)))
  if not blocks:
    example = block_pattern.replace(r"(\d+)", "0").replace("\\", "")
    raise CheckpointError(f"{source}: not an RRDBNet state dict: no RRDB blocks (no key like "
                          f"{example})")
  num_feat, in_channels = _shape_of(state_dict, first_key, source)[:2]
  num_out_ch = _shape_of(state_dict, last_key, source)[0]
  num_grow_ch = _shape_of(state_dict, blocks[0][1], source)[0]
  if layout != BASICSR:
    if scale not in (None, 4):
      raise CheckpointError(f"{source}: the {layout} layout is x4 only, cannot read it as x{scale}")
    scale, num_in_ch = 4, in_channels
  elif scale is None:
    matches = [s for s, fold in SCALE_CHANNEL_FOLD.items() if in_channels == num_out_ch * fold]
    if not matches:
      raise CheckpointError(f"{source}: cannot infer the scale: conv_first takes {in_channels} "
                            f"channels and conv_last gives {num_out_ch} (pass the scale)")
    scale, num_in_ch = matches[0], num_out_ch
  else:
    fold = SCALE_CHANNEL_FOLD.get(scale)
    if fold is None or in_channels % fold:
      raise CheckpointError(f"{source}: conv_first takes {in_channels} channels, which does not "
                            f"fit scale x{scale}")
    num_in_ch = in_channels // fold
  return {"num_in_ch": int(num_in_ch), "num_out_ch": int(num_out_ch), "scale": int(scale),
          "num_feat": int(num_feat), "num_block": blocks[-1][0] + 1,
          "num_grow_ch": int(num_grow_ch)}


def _rrdbnet_torch_name(module_path, layout, num_block):
  head = module_path[0]
  if head.startswith("body_"):
    block, rdb, conv = head[len("body_"):], module_path[1], module_path[2]
    if layout == BASICSR:
      return f"body.{block}.{rdb}.{conv}"
    if layout == ESRGAN:
      return f"RRDB_trunk.{block}.{rdb.upper()}.{conv}"
    return f"model.1.sub.{block}.{rdb.upper()}.{conv}.0"
  if layout == BASICSR:
    return head
  if layout == ESRGAN:
    return _ESRGAN_NAMES[head]
  return f"model.1.sub.{num_block}" if head == "conv_body" else _ORIGINAL_NAMES[head]


def _rrdbnet_entries(arch, layout):
  if layout not in LAYOUTS:
    raise CheckpointError(f"unknown RRDBNet key layout {layout!r}; choose from {LAYOUTS}")
  model = generator_io.generator_from_arch(arch)
  shapes = _flat_shapes(model, (1, 8, 8, arch["num_in_ch"]))
  return [_leaf_entry(path[1:], _rrdbnet_torch_name(path[1:-1], layout, arch["num_block"]), shape)
          for path, shape in shapes.items()]


def _describe_rrdbnet(arch, layout):
  fields = ", ".join(f"{k}={v}" for k, v in arch.items())
  return f"RRDBNet({fields}) in the {layout} layout"


def rrdbnet_params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict",
                              scale: int | None = None) -> tuple[dict, dict[str, int]]:
  """(Flax RRDBNet params, arch) from a bare generator state dict in any of LAYOUTS."""
  layout = detect_rrdbnet_layout(state_dict, source)
  arch = infer_rrdbnet_arch(state_dict, source, layout, scale)
  params = _import(state_dict, _rrdbnet_entries(arch, layout), source,
                   _describe_rrdbnet(arch, layout))
  return params, arch


def rrdbnet_params_to_torch(params, arch: Mapping[str, int],
                            layout: str = BASICSR) -> dict[str, np.ndarray]:
  """Flax RRDBNet params -> state dict (numpy) that the PyTorch network loads with strict=True."""
  return _export(params, _rrdbnet_entries(dict(arch), layout), _describe_rrdbnet(arch, layout))


# ------------------------------------------------------------------------------------------------
# Discriminators.


def _vgg_linear1_from_torch(channels):
  # torch flattens (C, H, W) and stores (out, in); Flax flattens (H, W, C) and stores (in, out).
  def to_flax(weight):
    out = weight.shape[0]
    return weight.reshape(out, channels, 4, 4).transpose(2, 3, 1, 0).reshape(-1, out)

  def to_torch(kernel):
    out = kernel.shape[-1]
    return kernel.reshape(4, 4, channels, out).transpose(3, 2, 0, 1).reshape(out, -1)

  return to_flax, to_torch


_BATCH_NORM_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                     "var": "running_var"}


def vgg_discriminator_variables_from_torch(state_dict: Mapping[str, Any],
                                           source: str = "state dict"
                                           ) -> tuple[dict, dict[str, int]]:
  """({'params', 'batch_stats'}, arch) of VGGStyleDiscriminator from BasicSR's state dict."""
  num_feat, num_in_ch = _shape_of(state_dict, "conv0_0.weight", source,
                                    "VGGStyleDiscriminator")[:2]
  input_size = 256 if "conv5_0.weight" in state_dict else 128
  arch = {"num_in_ch": int(num_in_ch), "num_feat": int(num_feat), "input_size": input_size}
  model = VGGStyleDiscriminator(**arch)
  shapes = _flat_shapes(model, (1, input_size, input_size, num_in_ch), train=False)
  entries = []
  for path, shape in shapes.items():
    module, leaf = path[1], path[-1]
    if module.startswith("bn"):
      entries.append(_Entry(path, f"{module}.{_BATCH_NORM_NAMES[leaf]}", shape, _same, _same))
    elif module == "linear1" and leaf == "kernel":
      entries.append(_Entry(path, "linear1.weight", shape,
                            *_vgg_linear1_from_torch(shape[0] // 16)))
    else:
      entries.append(_leaf_entry(path, module, shape))
  variables = _import(state_dict, entries, source, f"VGGStyleDiscriminator({arch})",
                      ignore=lambda key: key.endswith(".num_batches_tracked"))
  return variables, arch


def _spectral_v_from_torch(kernel_shape):
  # torch views the weight as (out, in * kh * kw); Flax's SpectralNormConv as (out, kh * kw * in).
  kh, kw, in_ch, _ = kernel_shape

  def to_flax(v):
    return v.reshape(in_ch, kh, kw).transpose(1, 2, 0).reshape(-1)

  def to_torch(v):
    return v.reshape(kh, kw, in_ch).transpose(2, 0, 1).reshape(-1)

  return to_flax, to_torch


def unet_discriminator_variables_from_torch(state_dict: Mapping[str, Any],
                                            source: str = "state dict",
                                            skip_connection: bool = True
                                            ) -> tuple[dict, dict[str, Any]]:
  """({'params', 'batch_stats'}, arch) of UNetDiscriminatorSN from Real-ESRGAN's state dict.

  Spectral-norm convs store weight_orig (the raw kernel) and the power-iteration vectors
  weight_u / weight_v, which land in `batch_stats` as u / v.
  """
  num_feat, num_in_ch = _shape_of(state_dict, "conv0.weight", source,
                                    "UNetDiscriminatorSN")[:2]
  arch = {"num_in_ch": int(num_in_ch), "num_feat": int(num_feat),
          "skip_connection": skip_connection}
  shapes = _flat_shapes(UNetDiscriminatorSN(**arch), (1, 16, 16, num_in_ch), train=False)
  entries = []
  for path, shape in shapes.items():
    collection, module, leaf = path
    if collection == "batch_stats" and leaf == "u":
      entries.append(_Entry(path, f"{module}.weight_u", shape, _same, _same))
    elif collection == "batch_stats" and leaf == "v":
      kernel_shape = shapes[("params", module, "kernel")]
      entries.append(_Entry(path, f"{module}.weight_v", shape,
                            *_spectral_v_from_torch(kernel_shape)))
    elif ("batch_stats", module, "u") in shapes:  # the raw kernel of a spectral-norm conv
      entries.append(_Entry(path, f"{module}.weight_orig", shape, conv_kernel_from_torch,
                            conv_kernel_to_torch))
    else:
      entries.append(_leaf_entry(path, module, shape))
  variables = _import(state_dict, entries, source, f"UNetDiscriminatorSN({arch})")
  return variables, arch


# ------------------------------------------------------------------------------------------------
# VGG19 (perceptual loss).


def vgg19_params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict") -> dict:
  """VGG19Features params (conv1_1 ... conv5_4) from torchvision's vgg19 state dict.

  Reads `features.N.weight/bias` and ignores the classifier; a bare `features` state dict
  (`N.weight`) works too.
  """
  prefix = "features." if any(k.startswith("features.") for k in state_dict) else ""
  shapes = _flat_shapes(VGG19Features(layers=(VGG19_LAYERS[-1],)), (1, 32, 32, 3))
  entries = [_leaf_entry(path[1:], f"{prefix}{TORCHVISION_FEATURE_INDEX[path[1]]}", shape)
             for path, shape in shapes.items()]
  return _import(state_dict, entries, source, "torchvision VGG19 features",
                 ignore=lambda key: key.startswith("classifier."))


# ------------------------------------------------------------------------------------------------
# .pth files (torch imported here only).


def _import_torch(path):
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise CheckpointError(f"{path}: reading or writing .pth files needs PyTorch "
                          "(pip install torch); nothing else in esrgan_jax does") from error
  return torch


def _first_line(error):
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


# torch.save writes a zip archive; files from before PyTorch 1.6 are a bare pickle (protocol 2+).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
  """torch.load of a local or gs:// file on CPU, with tensors only (weights_only=True)."""
  torch = _import_torch(path)
  file = epath.Path(path)
  if not file.exists():
    raise CheckpointError(f"{path}: no such file")
  if file.is_dir():
    raise CheckpointError(f"{path}: is a directory, expected a PyTorch .pth file")
  data = file.read_bytes()
  if not data:
    raise CheckpointError(f"{path}: is empty, expected a PyTorch .pth file")
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
                          f"({_first_line(error)})") from error


def write_torch_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
  """torch.save of a (possibly nested) dict of numpy arrays; refuses to overwrite."""
  torch = _import_torch(path)
  file = epath.Path(path)
  if file.exists():
    raise CheckpointError(f"{path}: output file already exists")

  def to_torch(tree):
    if isinstance(tree, Mapping):
      return {k: to_torch(v) for k, v in tree.items()}
    return torch.from_numpy(np.array(tree, np.float32))

  buffer = io.BytesIO()
  torch.save(to_torch(state), buffer)
  file.parent.mkdir(parents=True, exist_ok=True)
  file.write_bytes(buffer.getvalue())


def load_generator_from_torch(path: str | os.PathLike, weights_key: str | None = None,
                              scale: int | None = None) -> tuple[dict, dict[str, int]]:
  """(params, arch) of an ESRGAN/BasicSR/Real-ESRGAN generator .pth file."""
  state = unwrap_state_dict(read_torch_checkpoint(path), str(path), weights_key)
  return rrdbnet_params_from_torch(state, str(path), scale)


# ------------------------------------------------------------------------------------------------
# Command line.


def convert_generator(in_path, out_dir, weights_key=None, scale=None) -> dict[str, int]:
  params, arch = load_generator_from_torch(in_path, weights_key, scale)
  generator_io.save_generator(out_dir, params, arch)
  return arch


def export_generator(checkpoint_dir, out_path, wrap_key: str | None = "params",
                     layout: str = BASICSR, which: str = "generator_ema") -> dict[str, int]:
  """Generator checkpoint (or training workdir) -> .pth.

  `wrap_key` None writes a bare state dict, as ESRGAN's own files are; `which` picks the EMA or
  the raw generator of a training workdir.
  """
  if not epath.Path(checkpoint_dir).is_dir():
    raise CheckpointError(f"{checkpoint_dir}: not a directory; --export reads a generator "
                          "checkpoint or training workdir and writes a .pth")
  params, arch = generator_io.load_generator(checkpoint_dir, which)
  try:
    state = rrdbnet_params_to_torch(params, arch, layout)
  except CheckpointError as error:
    raise CheckpointError(f"{checkpoint_dir}: {error}") from error
  write_torch_checkpoint(out_path, {wrap_key: state} if wrap_key else state)
  return arch


def convert_vgg19(in_path, out_dir) -> None:
  from esrgan_jax import vgg19_weights  # pylint: disable=import-outside-toplevel
  state = unwrap_state_dict(read_torch_checkpoint(in_path), str(in_path))
  vgg19_weights.save_vgg19_params(out_dir, vgg19_params_from_torch(state, str(in_path)))


def _parser():
  parser = argparse.ArgumentParser(
      prog="esrgan_jax.convert",
      description="Convert ESRGAN / BasicSR / Real-ESRGAN PyTorch weights to esrgan_jax "
                  "checkpoints, or export a generator back to a BasicSR .pth.")
  parser.add_argument("source", help="IN.pth, or CKPT_DIR with --export")
  parser.add_argument("destination", help="OUT_DIR, or OUT.pth with --export")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--vgg19", action="store_true",
                    help="SOURCE is torchvision's vgg19 .pth; write VGG19 params for the "
                         "perceptual loss (read by vgg19_weights.load_vgg19_params)")
  mode.add_argument("--export", action="store_true",
                    help="SOURCE is a generator checkpoint; write a .pth of BasicSR's RRDBNet")
  parser.add_argument("--weights_key", choices=WRAPPER_KEYS, default=None,
                      help="entry of a BasicSR checkpoint to read (default: params_ema if "
                           "present, else params)")
  parser.add_argument("--scale", type=int, choices=sorted(SCALE_CHANNEL_FOLD), default=None,
                      help="generator scale, when it cannot be inferred from conv_first")
  parser.add_argument("--export_key", choices=(*WRAPPER_KEYS, "none"), default="params",
                      help="with --export: wrap the state dict under this key ('none': bare)")
  parser.add_argument("--export_layout", choices=LAYOUTS, default=BASICSR,
                      help="with --export: key names to write")
  parser.add_argument("--generator", choices=("generator_ema", "generator"),
                      default="generator_ema",
                      help="with --export from a training workdir: which generator to write")
  return parser


def main(argv=None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  try:
    if args.export:
      wrap_key = None if args.export_key == "none" else args.export_key
      arch = export_generator(args.source, args.destination, wrap_key, args.export_layout,
                              args.generator)
      print(f"wrote {args.destination}: {_describe_rrdbnet(arch, args.export_layout)}")
    elif args.vgg19:
      convert_vgg19(args.source, args.destination)
      print(f"wrote {args.destination}: VGG19 features conv1_1 ... conv5_4")
    else:
      arch = convert_generator(args.source, args.destination, args.weights_key, args.scale)
      print(f"wrote {args.destination}: RRDBNet {arch}")
  except CheckpointError as error:
    message = " ".join(str(error).split())  # one line, whatever the underlying error said
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
