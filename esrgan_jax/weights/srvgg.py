"""SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3) in PyTorch's key layout.

The released files (Real-ESRGAN's, wrapped in params / params_ema, and spandrel's bare ones) hold
`body.{i}.weight` and `body.{i}.bias` for the 3x3 convs at even i, and `body.{i}.weight`, one
slope per channel, for the PReLUs at odd i; ReLU and LeakyReLU hold nothing. The last conv,
`body.{2 num_conv + 2}`, makes num_out_ch * scale^2 channels for the pixel shuffle.

Exports always carry PReLU slopes: a ReLU net is written with slopes 0 and a LeakyReLU(0.1) net with
slopes 0.1, the same function. spandrel (ComfyUI, chaiNNer) recognises a compact file by those
slopes and builds it with PReLU, so a file without them would not load there; read back here, such
a file is a PReLU net that computes what the ReLU / LeakyReLU one did.

The architecture record is
  {"arch": "srvgg_compact", "num_in_ch", "num_out_ch", "scale", "num_feat", "num_conv",
   "act_type"}
with act_type one of "prelu", "relu", "leakyrelu" and every other field an int.
"""

import re
from typing import Any, Mapping

import numpy as np

from esrgan_jax.models.srvgg import ACT_TYPES, LEAKY_SLOPE, SRVGGNetCompact
from esrgan_jax.weights import records, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

ARCH_NAME = "srvgg_compact"
ARCH_FIELDS = ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_conv", "act_type")
MODEL = "SRVGGNetCompact"
_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")


def _indices(state_dict: Mapping[str, Any]) -> list[int]:
  return sorted({int(m.group(1)) for key in state_dict if (m := _KEY.fullmatch(key))})


def is_srvgg(state_dict: Mapping[str, Any]) -> bool:
  """Whether the keys are exactly the compact pattern: body.{i}.weight/bias only, with body.0's
  conv, and either body.1's PReLU (spandrel's test) or no activation parameters at all."""
  if not state_dict or not all(_KEY.fullmatch(key) for key in state_dict):
    return False
  has_odd = any(i % 2 for i in _indices(state_dict))
  return "body.0.weight" in state_dict and ("body.1.weight" in state_dict or not has_odd)


def infer_arch(state_dict: Mapping[str, Any], source: str = "state dict",
               act_type: str | None = None) -> dict[str, Any]:
  """The architecture record of a bare SRVGGNetCompact state dict, read as spandrel reads it.

  num_feat and num_in_ch come from body.0's conv, num_conv from the last conv's index, scale and
  num_out_ch from its channels (see `records.scale_and_out_channels`). PReLU slopes (body.1.weight) mean
  act_type "prelu"; without them the net is a ReLU or LeakyReLU one, which the file cannot tell
  apart, so `act_type` must then be given.
  """
  indices = _indices(state_dict)
  last = indices[-1] if indices else 0
  if last < 2 or last % 2:
    raise CheckpointError(f"{source}: not an {MODEL} state dict: expected body.0.weight up to a "
                          f"last conv body.N.weight, N even and at least 2 "
                          f"(keys: {trees.preview(state_dict)})")
  num_feat, num_in_ch = torch_io.shape_of(state_dict, "body.0.weight", source, MODEL)[:2]
  last_key = f"body.{last}.weight"
  channels = torch_io.shape_of(state_dict, last_key, source, MODEL)[0]
  scale, num_out_ch = records.scale_and_out_channels(channels, num_in_ch, source, last_key)
  if act_type is None:
    if "body.1.weight" not in state_dict:
      raise CheckpointError(f"{source}: {MODEL} without PReLU slopes (no body.1.weight) uses "
                            f"relu or leakyrelu, which the file does not say: give act_type")
    act_type = "prelu"
  arch = {"arch": ARCH_NAME, "num_in_ch": int(num_in_ch), "num_out_ch": int(num_out_ch),
          "scale": int(scale), "num_feat": int(num_feat), "num_conv": (last - 2) // 2,
          "act_type": act_type}
  model_from_arch(arch, source)  # refuses what the module cannot run (e.g. 4 in, 3 out)
  return arch


def describe(arch: Mapping[str, Any]) -> str:
  return records.describe(MODEL, ARCH_FIELDS, arch)


def model_from_arch(arch: Mapping[str, Any], source: str = "architecture",
                    **module_kwargs) -> SRVGGNetCompact:
  """The Flax module of an architecture record; a CheckpointError for a record that does not fit."""
  records.check(arch, ARCH_NAME, ARCH_FIELDS, MODEL, source)
  if arch["act_type"] not in ACT_TYPES:
    raise CheckpointError(f"{source}: act_type must be one of {ACT_TYPES}, "
                          f"got {arch['act_type']!r}")
  ints = {f: int(arch[f]) for f in ARCH_FIELDS if f != "act_type"}
  if min(ints.values()) < 0 or min(ints["scale"], ints["num_feat"], ints["num_in_ch"]) < 1:
    raise CheckpointError(f"{source}: {describe(arch)} has a size below 1")
  # The nearest-upsampled input is added to the output, so the channels must broadcast.
  if ints["num_in_ch"] not in (1, ints["num_out_ch"]):
    raise CheckpointError(f"{source}: {describe(arch)} adds its input to its output, so "
                          f"num_in_ch must be 1 or num_out_ch")
  return SRVGGNetCompact(num_in_ch=ints["num_in_ch"], num_out_ch=ints["num_out_ch"],
                         num_feat=ints["num_feat"], num_conv=ints["num_conv"],
                         upscale=ints["scale"], act_type=arch["act_type"], **module_kwargs)


def arch_of(model: SRVGGNetCompact) -> dict[str, Any]:
  """The record of a module, `model_from_arch`'s inverse."""
  return {"arch": ARCH_NAME, "num_in_ch": model.num_in_ch, "num_out_ch": model.num_out_ch,
          "scale": model.upscale, "num_feat": model.num_feat, "num_conv": model.num_conv,
          "act_type": model.act_type}


def _entries(arch: Mapping[str, Any]) -> list[torch_io.Entry]:
  model = model_from_arch(arch)
  shapes = trees.variable_shapes(model, (1, 8, 8, model.num_in_ch))
  entries = []
  for path, shape in shapes.items():
    path = path[1:]  # below "params"
    key = path[0].replace("body_", "body.")
    if path[-1] == "weight":  # a PReLU's slopes, the same in both worlds
      entries.append(torch_io.Entry(path, f"{key}.weight", shape, torch_io.same, torch_io.same))
    else:
      entries.append(torch_io.leaf_entry(path, key, shape))
  return entries


def params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict",
                      act_type: str | None = None) -> tuple[dict, dict[str, Any]]:
  """(Flax SRVGGNetCompact params, arch) from a bare state dict; see `infer_arch`."""
  arch = infer_arch(state_dict, source, act_type)
  params = torch_io.import_entries(state_dict, _entries(arch), source, describe(arch))
  return params, arch


def params_to_torch(params, arch: Mapping[str, Any]) -> dict:
  """Flax params -> the released files' state dict (float32 numpy), loadable with strict=True."""
  state = torch_io.export_entries(params, _entries(arch), describe(arch))
  if arch["act_type"] != "prelu":  # see the module docstring
    slope = 0.0 if arch["act_type"] == "relu" else LEAKY_SLOPE
    for layer in range(1, 2 * int(arch["num_conv"]) + 2, 2):
      state[f"body.{layer}.weight"] = np.full((int(arch["num_feat"]),), slope, np.float32)
  # In PyTorch's order: by layer, each conv's weight before its bias.
  return dict(sorted(state.items(), key=lambda item: (int(item[0].split(".")[1]),
                                                      item[0].endswith(".bias"))))
