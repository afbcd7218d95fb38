"""SPAN in spandrel's key layout (the official SPAN code's names).

Flax parameter paths joined by "." are the state-dict keys, with kernel <-> weight (HWIO <-> OIHW):
conv_1.sk, conv_1.conv.{0,1,2}, conv_1.eval_conv, block_{1..6}.c{1,2,3}_r.(the same), conv_cat,
conv_2.(the same), upsampler.0. spandrel's files carry every Conv3XC in both forms, the branches
(conv, sk) and their fold (eval_conv), plus a `no_norm` buffer when the input is not normalised.
spandrel recomputes eval_conv from the branches at every eval forward, so a stored one is not
read here: params come in the branch form, and the export writes the branches, eval_conv folded by
`models.span.fold`, and `no_norm` when norm is off, as spandrel's own files are.

The architecture record is
  {"arch": "span", "num_in_ch", "num_out_ch", "scale", "feature_channels", "norm"}
with norm a bool and every other field an int.
"""

from typing import Any, Mapping

import numpy as np

from esrgan_jax.models.span import DEFAULT_RGB_MEAN, SPAB_COUNT, SPAN, fold
from esrgan_jax.weights import records, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

ARCH_NAME = "span"
ARCH_FIELDS = ("num_in_ch", "num_out_ch", "scale", "feature_channels", "norm")
MODEL = "SPAN"
NO_NORM_KEY = "no_norm"
FIRST_KEY, UPSAMPLER_KEY = "conv_1.sk.weight", "upsampler.0.weight"
# spandrel's test for a SPAN state dict, less the eval_conv keys that are not read here.
_MARKER_KEYS = (FIRST_KEY, "block_1.c1_r.sk.weight", "conv_cat.weight", "conv_2.sk.weight",
                UPSAMPLER_KEY)
# Each name's rank among its siblings in the reference's modules (no_norm is SPAN's own buffer).
_REGISTRATION_ORDER = {
    name: rank for names in (
        ("no_norm", "conv_1", *(f"block_{i}" for i in range(1, SPAB_COUNT + 1)), "conv_cat",
         "conv_2", "upsampler"),
        ("c1_r", "c2_r", "c3_r"), ("sk", "conv", "eval_conv"), ("weight", "bias"))
    for rank, name in enumerate(names)}


def is_span(state_dict: Mapping[str, Any]) -> bool:
  return all(key in state_dict for key in _MARKER_KEYS)


def infer_arch(state_dict: Mapping[str, Any], source: str = "state dict") -> dict[str, Any]:
  """The architecture record of a bare SPAN state dict, read as spandrel reads it.

  feature_channels and num_in_ch come from conv_1's skip conv, scale and num_out_ch from the
  upsampler conv's channels (num_out_ch = num_in_ch first, see `scale_and_out_channels`), and
  norm is off exactly when the `no_norm` buffer is there.
  """
  features, num_in_ch = torch_io.shape_of(state_dict, FIRST_KEY, source, MODEL)[:2]
  channels = torch_io.shape_of(state_dict, UPSAMPLER_KEY, source, MODEL)[0]
  scale, num_out_ch = records.scale_and_out_channels(channels, num_in_ch, source, UPSAMPLER_KEY)
  arch = {"arch": ARCH_NAME, "num_in_ch": int(num_in_ch), "num_out_ch": int(num_out_ch),
          "scale": int(scale), "feature_channels": int(features),
          "norm": NO_NORM_KEY not in state_dict}
  model_from_arch(arch, source)  # refuses what the module cannot run (norm on 1 channel)
  return arch


def describe(arch: Mapping[str, Any]) -> str:
  return records.describe(MODEL, ARCH_FIELDS, arch)


def model_from_arch(arch: Mapping[str, Any], source: str = "architecture",
                    **module_kwargs) -> SPAN:
  """The Flax module of an architecture record (deploy=True etc. in `module_kwargs`)."""
  records.check(arch, ARCH_NAME, ARCH_FIELDS, MODEL, source)
  ints = {f: int(arch[f]) for f in ARCH_FIELDS if f != "norm"}
  if min(ints.values()) < 1:
    raise CheckpointError(f"{source}: {describe(arch)} has a size below 1")
  norm = bool(arch["norm"])
  # The normalisation subtracts an RGB mean; spandrel's SPAN cannot run it on other channels.
  if norm and ints["num_in_ch"] != len(DEFAULT_RGB_MEAN):
    raise CheckpointError(f"{source}: {describe(arch)} normalises its input by an RGB mean, "
                          f"which needs {len(DEFAULT_RGB_MEAN)} input channels")
  return SPAN(num_in_ch=ints["num_in_ch"], num_out_ch=ints["num_out_ch"],
              feature_channels=ints["feature_channels"], upscale=ints["scale"], norm=norm,
              **module_kwargs)


def arch_of(model: SPAN) -> dict[str, Any]:
  """The record of a module (branch or folded form), `model_from_arch`'s inverse."""
  return {"arch": ARCH_NAME, "num_in_ch": model.num_in_ch, "num_out_ch": model.num_out_ch,
          "scale": model.upscale, "feature_channels": model.feature_channels,
          "norm": bool(model.norm)}


def _entries(arch: Mapping[str, Any], deploy: bool) -> list[torch_io.Entry]:
  """Every conv's kernel and bias, of the branch form or the folded one."""
  model = model_from_arch(arch, deploy=deploy)
  shapes = trees.variable_shapes(model, (1, 8, 8, model.num_in_ch))
  return [torch_io.leaf_entry(path[1:], ".".join(path[1:-1]), shape)
          for path, shape in shapes.items()]


def params_from_torch(state_dict: Mapping[str, Any],
                      source: str = "state dict") -> tuple[dict, dict[str, Any]]:
  """(Flax SPAN params in the branch form, arch) from a bare state dict; see `infer_arch`.

  Stored eval_conv weights and the `no_norm` buffer are skipped; every other key must fit.
  """
  arch = infer_arch(state_dict, source)
  branches = _entries(arch, deploy=False)
  branch_keys = {entry.key for entry in branches}
  skipped = {e.key for e in _entries(arch, deploy=True) if e.key not in branch_keys}
  skipped.add(NO_NORM_KEY)
  params = torch_io.import_entries(state_dict, branches, source, describe(arch),
                                   ignore=lambda key: key in skipped)
  return params, arch


def params_to_torch(params, arch: Mapping[str, Any]) -> dict:
  """Branch-form Flax params -> spandrel's state dict (float32 numpy), loadable with strict=True:
  the branches, each Conv3XC's eval_conv folded from them, and `no_norm` when norm is off."""
  description = describe(arch)
  state = torch_io.export_entries(params, _entries(arch, deploy=False), description)
  # fold() passes conv_cat and upsampler.0 through unchanged, so both exports agree on them.
  state.update(torch_io.export_entries(fold(params), _entries(arch, deploy=True),
                                       f"{description} (folded)"))
  if not arch["norm"]:
    state[NO_NORM_KEY] = np.zeros(1, np.float32)
  return dict(sorted(state.items(), key=lambda item: _torch_order(item[0])))


def _torch_order(key: str) -> tuple[int, ...]:
  """Where PyTorch's state_dict() puts a key: modules in the order SPAN's __init__ makes them."""
  return tuple(int(part) if part.isdigit() else _REGISTRATION_ORDER[part]
               for part in key.split("."))
