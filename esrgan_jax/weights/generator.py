"""The generator (RRDBNet) on disk: its PyTorch key layouts, and generator checkpoints.

PyTorch state dicts come in three key layouts, all read into the one Flax RRDBNet:
  basicsr          conv_first, body.N.rdb1.conv1, conv_body, conv_up1, conv_up2, conv_hr, conv_last
                   (BasicSR and Real-ESRGAN; x2/x1 models fold pixels into conv_first's channels)
  esrgan           conv_first, RRDB_trunk.N.RDB1.conv1, trunk_conv, upconv1, upconv2, HRconv,
                   conv_last (the ESRGAN repository's RRDBNet_arch, x4)
  esrgan_original  model.0, model.1.sub.N.RDB1.conv1.0, model.1.sub.{num_block} (trunk conv),
                   model.3, model.6, model.8, model.10 (the released RRDB_ESRGAN_x4.pth)

A generator checkpoint is a store directory (`weights/store.py`) with the JSON entry `arch`
{num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch}. It is written by the converter
and `interpolate`, and read by the upscaler, eval mode and stage 2's initialisation, which also
accept a training workdir (see `load_generator`).
"""

import os
import re
from typing import Any, Mapping

from etils import epath

from esrgan_jax.models import RRDBNet
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

ARCH_FIELDS = ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "num_grow_ch")
BASICSR, ESRGAN, ESRGAN_ORIGINAL = "basicsr", "esrgan", "esrgan_original"
LAYOUTS = (BASICSR, ESRGAN, ESRGAN_ORIGINAL)
WHICH = ("generator_ema", "generator")
# conv_first's input channels are num_in_ch times this fold (pixel-unshuffle by 4 // scale).
SCALE_CHANNEL_FOLD = {4: 1, 2: 4, 1: 16}

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


# ------------------------------------------------------------------------------------------------
# Architecture records.


def arch_of(model: RRDBNet) -> dict[str, int]:
  return {field: int(getattr(model, field)) for field in ARCH_FIELDS}


def generator_from_arch(arch: Mapping[str, Any], **module_kwargs) -> RRDBNet:
  missing = [f for f in ARCH_FIELDS if f not in arch]
  if missing:
    raise CheckpointError(f"generator architecture is missing field(s) {missing}")
  return RRDBNet(**{f: int(arch[f]) for f in ARCH_FIELDS}, **module_kwargs)


def describe(arch: Mapping[str, int], layout: str) -> str:
  fields = ", ".join(f"{k}={v}" for k, v in arch.items())
  return f"RRDBNet({fields}) in the {layout} layout"


# ------------------------------------------------------------------------------------------------
# PyTorch state dicts.


def detect_layout(state_dict: Mapping[str, Any], source: str = "state dict") -> str:
  """Which of LAYOUTS a generator state dict uses, from its key names."""
  keys = list(state_dict)
  if "conv_first.weight" in state_dict:
    if "trunk_conv.weight" in state_dict or any(k.startswith("RRDB_trunk.") for k in keys):
      return ESRGAN
    return BASICSR
  if "model.0.weight" in state_dict and any(k.startswith("model.1.sub.") for k in keys):
    return ESRGAN_ORIGINAL
  raise CheckpointError(f"{source}: not an RRDBNet (ESRGAN generator) state dict: it has neither "
                        f"conv_first.weight nor model.0.weight (keys: {trees.preview(keys)})")


def infer_arch(state_dict: Mapping[str, Any], source: str = "state dict",
               layout: str | None = None, scale: int | None = None) -> dict[str, int]:
  """num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch of a generator state dict.

  BasicSR's x2 and x1 models pixel-unshuffle the input by 2 or 4 first, so conv_first takes 4x or
  16x the image channels: with 3-channel output, 3 -> x4, 12 -> x2, 48 -> x1 (input channels are
  assumed to equal output channels unless `scale` is given). ESRGAN's own layouts are x4 only.
  """
  layout = layout or detect_layout(state_dict, source)
  block_pattern, first_key, last_key = _LAYOUT_KEYS[layout]
  blocks = sorted((int(m.group(1)), key) for key in state_dict
                  if (m := re.fullmatch(block_pattern, key)))
  if not blocks:
    example = block_pattern.replace(r"(\d+)", "0").replace("\\", "")
    raise CheckpointError(f"{source}: not an RRDBNet state dict: no RRDB blocks (no key like "
                          f"{example})")
  num_feat, in_channels = torch_io.shape_of(state_dict, first_key, source, "RRDBNet")[:2]
  num_out_ch = torch_io.shape_of(state_dict, last_key, source, "RRDBNet")[0]
  num_grow_ch = torch_io.shape_of(state_dict, blocks[0][1], source, "RRDBNet")[0]
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


def _torch_name(module_path, layout, num_block):
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


def _entries(arch, layout):
  if layout not in LAYOUTS:
    raise CheckpointError(f"unknown RRDBNet key layout {layout!r}; choose from {LAYOUTS}")
  shapes = trees.variable_shapes(generator_from_arch(arch), (1, 8, 8, arch["num_in_ch"]))
  return [torch_io.leaf_entry(path[1:], _torch_name(path[1:-1], layout, arch["num_block"]), shape)
          for path, shape in shapes.items()]


def params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict",
                      scale: int | None = None) -> tuple[dict, dict[str, int]]:
  """(Flax RRDBNet params, arch) from a bare generator state dict in any of LAYOUTS."""
  layout = detect_layout(state_dict, source)
  arch = infer_arch(state_dict, source, layout, scale)
  params = torch_io.import_entries(state_dict, _entries(arch, layout), source,
                                   describe(arch, layout))
  return params, arch


def params_to_torch(params, arch: Mapping[str, int], layout: str = BASICSR) -> dict:
  """Flax RRDBNet params -> state dict (numpy) that the PyTorch network loads with strict=True."""
  return torch_io.export_entries(params, _entries(dict(arch), layout), describe(arch, layout))


def load_generator_from_torch(path: str | os.PathLike, weights_key: str | None = None,
                              scale: int | None = None) -> tuple[dict, dict[str, int]]:
  """(params, arch) of an ESRGAN/BasicSR/Real-ESRGAN generator .pth file."""
  return params_from_torch(torch_io.read_state_dict(path, weights_key), str(path), scale)


# ------------------------------------------------------------------------------------------------
# Generator checkpoints.


def save_generator(directory: str | os.PathLike, params, arch: Mapping[str, Any]) -> None:
  """Writes `params` and `arch` atomically to a new `directory` (local path or gs://)."""
  generator_from_arch(arch)  # validates the fields before anything is written
  store.save(directory, params, "arch", dict(arch), "output checkpoint directory")


def is_generator_checkpoint(directory: str | os.PathLike) -> bool:
  return store.has_params_and_json(directory, "arch")


def load_generator(directory: str | os.PathLike,
                   which: str = "generator_ema") -> tuple[dict, dict[str, int]]:
  """Returns (params, arch), with a one-line error naming the path when that fails.

  `directory` is a generator checkpoint, or a training workdir / its checkpoints directory / one
  step of it, from which the newest readable step's `which` generator ('generator_ema' or
  'generator') is read.
  """
  params, arch, _ = load_generator_and_source(directory, which)
  return params, arch


def load_generator_and_source(directory: str | os.PathLike, which: str = "generator_ema"
                              ) -> tuple[dict, dict[str, int], epath.Path]:
  """load_generator, plus the directory actually read: the step, for a training workdir."""
  path = epath.Path(directory)
  if not path.exists():
    raise CheckpointError(f"{path}: no such checkpoint directory")
  if not path.is_dir():
    raise CheckpointError(f"{path}: is a file, not a checkpoint directory (convert PyTorch .pth "
                          "files first with `python -m esrgan_jax.convert IN.pth OUT_DIR`)")
  if is_generator_checkpoint(path):
    params, arch = store.restore(path, "arch", "generator checkpoint")
  else:
    try:
      params, meta, path = checkpoints.read_latest_generator(path, which)
    except FileNotFoundError as error:
      raise CheckpointError(f"{path}: neither a generator checkpoint ('params' and 'arch' "
                            "entries, as written by esrgan_jax.convert) nor a training workdir "
                            "with checkpoints") from error
    except checkpoints.CheckpointDamagedError as error:
      raise CheckpointError(str(error)) from error
    arch = meta["arch"]
  arch = {f: int(v) for f, v in arch.items()}
  generator_from_arch(arch)
  return params, arch, path


# ------------------------------------------------------------------------------------------------
# Whole conversions, as the command line runs them.


def convert_generator(in_path, out_dir, weights_key: str | None = None,
                      scale: int | None = None) -> dict[str, int]:
  """A generator .pth -> a generator checkpoint directory; returns the architecture."""
  store.refuse_existing(out_dir, "output checkpoint directory")  # before reading a large file
  params, arch = load_generator_from_torch(in_path, weights_key, scale)
  save_generator(out_dir, params, arch)
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
  store.refuse_existing(out_path, "output file")
  params, arch = load_generator(checkpoint_dir, which)
  try:
    state = params_to_torch(params, arch, layout)
  except CheckpointError as error:
    raise CheckpointError(f"{checkpoint_dir}: {error}") from error
  torch_io.write_torch_checkpoint(out_path, {wrap_key: state} if wrap_key else state)
  return arch
