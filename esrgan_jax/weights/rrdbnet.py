"""RRDBNet (ESRGAN's generator) in its three PyTorch key layouts.

PyTorch state dicts come in three key layouts, all read into the one Flax RRDBNet:
  basicsr          conv_first, body.N.rdb1.conv1, conv_body, conv_up1, conv_up2, conv_hr, conv_last
                   (BasicSR and Real-ESRGAN; x2/x1 models fold pixels into conv_first's channels)
  esrgan           conv_first, RRDB_trunk.N.RDB1.conv1, trunk_conv, upconv1, upconv2, HRconv,
                   conv_last (the ESRGAN repository's RRDBNet_arch, x4)
  esrgan_original  model.0, model.1.sub.N.RDB1.conv1.0, model.1.sub.{num_block} (trunk conv),
                   model.3, model.6, model.8, model.10 (the released RRDB_ESRGAN_x4.pth;
                   spandrel's own state dicts, whose x2/x1 models fold as BasicSR's do)

Its architecture record is {num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch}, with
no "arch" key (checkpoints written before the other architectures have none; weights/generator.py
reads a missing one as "rrdbnet").
"""

import re
from typing import Any, Mapping, Optional

from esrgan_jax.models import RRDBNet
from esrgan_jax.weights import torch_io, trees
from esrgan_jax.weights.store import CheckpointError

ARCH_NAME = "rrdbnet"
ARCH_FIELDS = ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "num_grow_ch")
BASICSR, ESRGAN, ESRGAN_ORIGINAL = "basicsr", "esrgan", "esrgan_original"
LAYOUTS = (BASICSR, ESRGAN, ESRGAN_ORIGINAL)
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


def is_rrdbnet(state_dict: Mapping[str, Any]) -> bool:
  """Whether the keys name one of LAYOUTS' first convs (detect_layout tells which)."""
  return "conv_first.weight" in state_dict or (
      "model.0.weight" in state_dict and any(k.startswith("model.1.sub.") for k in state_dict))


def arch_of(model: RRDBNet) -> dict[str, int]:
  return {field: int(getattr(model, field)) for field in ARCH_FIELDS}


def model_from_arch(arch: Mapping[str, Any], **module_kwargs) -> RRDBNet:
  missing = [f for f in ARCH_FIELDS if f not in arch]
  if missing:
    raise CheckpointError(f"generator architecture is missing field(s) {missing}")
  return RRDBNet(**{f: int(arch[f]) for f in ARCH_FIELDS}, **module_kwargs)


def describe(arch: Mapping[str, int], layout: Optional[str] = None) -> str:
  """`RRDBNet(num_in_ch=3, ...)`, the constructor call as for the other architectures, then the
  key layout where one is involved (a PyTorch file)."""
  fields = ", ".join(f"{k}={arch[k]}" for k in ARCH_FIELDS if k in arch)
  return f"RRDBNet({fields})" + (f" in the {layout} layout" if layout else "")


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
  assumed to equal output channels unless `scale` is given). ESRGAN's own releases are x4, but x2
  and x1 files in its layouts (spandrel's state dicts, this package's exports) fold alike.
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
  if scale is None:
    matches = [s for s, fold in SCALE_CHANNEL_FOLD.items() if in_channels == num_out_ch * fold]
    if matches:
      scale, num_in_ch = matches[0], num_out_ch
    elif layout != BASICSR:  # ESRGAN's own files are x4 whatever their channels
      scale, num_in_ch = 4, in_channels
    else:
      raise CheckpointError(f"{source}: cannot infer the scale: conv_first takes {in_channels} "
                            f"channels and conv_last gives {num_out_ch} (pass the scale)")
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
  shapes = trees.variable_shapes(model_from_arch(arch), (1, 8, 8, arch["num_in_ch"]))
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
