"""Generators on disk, whatever the architecture: PyTorch files in and out, and checkpoints.

Three architectures, each with its own module for its PyTorch key layout(s):
  rrdbnet        ESRGAN / BasicSR / Real-ESRGAN RRDBNet, three layouts (weights/rrdbnet.py)
  srvgg_compact  Real-ESRGAN's SRVGGNetCompact: realesr-animevideov3, realesr-general-x4v3
                 (weights/srvgg.py)
  span           SPAN, in spandrel's names (weights/span.py)
A file's keys say which it is; `.pth` and `.safetensors` files are read and written alike, and
`--export` also writes a `.onnx` graph (`weights/onnx_export.py`).

A generator checkpoint is a store directory (`weights/store.py`) with the JSON entry `arch`, the
architecture record: RRDBNet's {num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch}
has no "arch" key (as checkpoints written before the others), the others name theirs
("arch": "srvgg_compact" / "span"). SPAN checkpoints hold the branch (training) form;
`inference_model_and_params` folds it for whoever only runs the network. Checkpoints are written
by the converter and `interpolate`, and read by the upscaler, eval mode and stage 2's
initialisation, which also accept a training workdir (see `load_generator`).
"""

import os
from typing import Any, Mapping

from etils import epath

from esrgan_jax.models import RRDBNet
from esrgan_jax.models.span import fold
from esrgan_jax.weights import checkpoints, onnx_export, rrdbnet, span, srvgg
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.rrdbnet import (  # noqa: F401 (RRDBNet's names, as callers know them)
    ARCH_FIELDS, BASICSR, ESRGAN, ESRGAN_ORIGINAL, LAYOUTS, SCALE_CHANNEL_FOLD, detect_layout,
    infer_arch)
from esrgan_jax.weights.store import CheckpointError

WHICH = ("generator_ema", "generator")
# Record name -> the module of its key layout; a record without "arch" is an RRDBNet's.
_LAYOUT_MODULES = {rrdbnet.ARCH_NAME: rrdbnet, srvgg.ARCH_NAME: srvgg, span.ARCH_NAME: span}
ARCHITECTURES = tuple(_LAYOUT_MODULES)
# Export defaults: .pth wrapped as Real-ESRGAN's releases are, .safetensors flat (it cannot nest).
DEFAULT_WRAP = "default"


# ------------------------------------------------------------------------------------------------
# Architecture records.


def arch_name(arch: Mapping[str, Any]) -> str:
  """"rrdbnet", "srvgg_compact" or "span"; a CheckpointError for any other record."""
  name = arch.get("arch", rrdbnet.ARCH_NAME)
  if name not in _LAYOUT_MODULES:
    raise CheckpointError(f"unknown generator architecture {name!r}; known: {ARCHITECTURES}")
  return name


def _layout_module(arch: Mapping[str, Any]):
  return _LAYOUT_MODULES[arch_name(arch)]


def record_fields(name: str) -> tuple[str, ...]:
  """The fields of architecture `name`'s record besides "arch" (RRDBNet's record has only these)."""
  return _LAYOUT_MODULES[name].ARCH_FIELDS


def arch_of(model) -> dict[str, Any]:
  """The architecture record of an RRDBNet, SRVGGNetCompact or SPAN module."""
  for layout, module_type in ((srvgg, srvgg.SRVGGNetCompact), (span, span.SPAN),
                              (rrdbnet, RRDBNet)):
    if isinstance(model, module_type):
      return layout.arch_of(model)
  raise TypeError(f"arch_of: {type(model).__name__} is not a generator module")


def normalised_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
  """A record as read back from JSON, with each field in its type (ints, act_type, norm)."""
  if arch_name(arch) == rrdbnet.ARCH_NAME:
    return {f: int(v) for f, v in arch.items()}
  kinds = {"arch": str, "act_type": str, "norm": bool}
  return {f: kinds.get(f, int)(v) for f, v in arch.items()}


def generator_from_arch(arch: Mapping[str, Any], **module_kwargs):
  """The Flax module of a record, in the form its checkpoints hold (SPAN: the branch form)."""
  return _layout_module(arch).model_from_arch(arch, **module_kwargs)


def inference_model_and_params(arch: Mapping[str, Any], params, **module_kwargs):
  """(module, params) for running a checkpoint: SPAN folded into its deploy form, which computes
  the same with one conv per Conv3XC; the others as they are."""
  if arch_name(arch) == span.ARCH_NAME:
    return span.model_from_arch(arch, deploy=True, **module_kwargs), fold(params)
  return generator_from_arch(arch, **module_kwargs), params


def describe(arch: Mapping[str, Any], layout: str | None = None) -> str:
  if arch_name(arch) == rrdbnet.ARCH_NAME:
    return rrdbnet.describe(arch, layout or BASICSR)
  return _layout_module(arch).describe(arch)


# ------------------------------------------------------------------------------------------------
# PyTorch state dicts.


def params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict",
                      scale: int | None = None, act_type: str | None = None
                      ) -> tuple[dict, dict[str, Any]]:
  """(Flax params, arch) of a bare generator state dict of any architecture, told by its keys.

  `scale` (RRDBNet x1/x2 files whose conv_first cannot tell it) and `act_type` (SRVGGNetCompact
  files without PReLU slopes) fill in what a file does not say; elsewhere they must agree.
  """
  if span.is_span(state_dict):
    params, arch = span.params_from_torch(state_dict, source)
  elif srvgg.is_srvgg(state_dict):
    params, arch = srvgg.params_from_torch(state_dict, source, act_type)
  elif rrdbnet.is_rrdbnet(state_dict):
    params, arch = rrdbnet.params_from_torch(state_dict, source, scale)
  else:
    raise CheckpointError(
        f"{source}: not an RRDBNet (ESRGAN generator), SRVGGNetCompact or SPAN state dict: it "
        f"has neither conv_first.weight, model.0.weight, body.0.weight nor conv_1.sk.weight "
        f"(keys: {trees.preview(list(state_dict))})")
  name = arch_name(arch)
  if act_type is not None and name != srvgg.ARCH_NAME:
    raise CheckpointError(f"{source}: act_type is for SRVGGNetCompact files; this is "
                          f"{describe(arch)}")
  if scale is not None and arch["scale"] != scale:
    raise CheckpointError(f"{source}: {describe(arch)} is x{arch['scale']}, not x{scale}")
  return params, arch


def params_to_torch(params, arch: Mapping[str, Any], layout: str | None = None) -> dict:
  """Flax params -> the architecture's state dict (numpy), loadable with strict=True.

  `layout` picks RRDBNet's key names (default basicsr); the others have one layout.
  """
  if arch_name(arch) == rrdbnet.ARCH_NAME:
    return rrdbnet.params_to_torch(params, arch, layout or BASICSR)
  if layout not in (None, BASICSR):
    raise CheckpointError(f"the {layout} layout is RRDBNet's; {describe(arch)} has only its own")
  return _layout_module(arch).params_to_torch(params, arch)


def load_generator_from_torch(path: str | os.PathLike, weights_key: str | None = None,
                              scale: int | None = None, act_type: str | None = None
                              ) -> tuple[dict, dict[str, Any]]:
  """(params, arch) of a generator .pth or .safetensors file of any architecture."""
  return params_from_torch(torch_io.read_state_dict(path, weights_key), str(path), scale,
                           act_type)


# ------------------------------------------------------------------------------------------------
# Generator checkpoints.


def save_generator(directory: str | os.PathLike, params, arch: Mapping[str, Any]) -> None:
  """Writes `params` and `arch` atomically to a new `directory` (local path or gs://)."""
  generator_from_arch(arch)  # validates the fields before anything is written
  store.save(directory, params, "arch", dict(arch), "output checkpoint directory")


def is_generator_checkpoint(directory: str | os.PathLike) -> bool:
  return store.has_params_and_json(directory, "arch")


def load_generator(directory: str | os.PathLike,
                   which: str = "generator_ema") -> tuple[dict, dict[str, Any]]:
  """Returns (params, arch), with a one-line error naming the path when that fails.

  `directory` is a generator checkpoint, or a training workdir / its checkpoints directory / one
  step of it, from which the newest readable step's `which` generator ('generator_ema' or
  'generator') is read.
  """
  params, arch, _ = load_generator_and_source(directory, which)
  return params, arch


def load_generator_and_source(directory: str | os.PathLike, which: str = "generator_ema"
                              ) -> tuple[dict, dict[str, Any], epath.Path]:
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
  try:
    arch = normalised_arch(arch)
    generator_from_arch(arch)
  except (CheckpointError, TypeError, ValueError) as error:
    raise CheckpointError(f"{path}: unusable generator architecture {arch} "
                          f"({store.describe_error(error)})") from error
  return params, arch, path


# ------------------------------------------------------------------------------------------------
# Whole conversions, as the command line runs them.


def convert_generator(in_path, out_dir, weights_key: str | None = None,
                      scale: int | None = None, act_type: str | None = None) -> dict[str, Any]:
  """A generator .pth / .safetensors -> a checkpoint directory; returns the architecture."""
  store.refuse_existing(out_dir, "output checkpoint directory")  # before reading a large file
  params, arch = load_generator_from_torch(in_path, weights_key, scale, act_type)
  save_generator(out_dir, params, arch)
  return arch


def export_generator(checkpoint_dir, out_path, wrap_key: str | None = DEFAULT_WRAP,
                     layout: str | None = None, which: str = "generator_ema",
                     half: bool = False) -> dict[str, Any]:
  """Generator checkpoint (or training workdir) -> .pth, .safetensors or .onnx by `out_path`'s
  suffix.

  Each architecture is written in its own key layout (RRDBNet: `layout`, default basicsr). The
  default `wrap_key` wraps a .pth under "params" as Real-ESRGAN's releases are and leaves a
  .safetensors flat; None writes a bare state dict, as ESRGAN's own files are. `which` picks the
  EMA or the raw generator of a training workdir. A .onnx is the network's graph
  (`weights/onnx_export.py`), float16 with `half`; it has no wrapper and no key layout, so
  `wrap_key` and `layout` must be left at their defaults there.
  """
  if not epath.Path(checkpoint_dir).is_dir():
    raise CheckpointError(f"{checkpoint_dir}: not a directory; --export reads a generator "
                          "checkpoint or training workdir and writes a .pth, .safetensors or "
                          ".onnx")
  to_onnx = onnx_export.is_onnx_path(out_path)
  if half and not to_onnx:
    raise CheckpointError(f"{out_path}: float16 (half) export is for .onnx files only")
  if to_onnx and (wrap_key != DEFAULT_WRAP or layout is not None):
    raise CheckpointError(f"{out_path}: an ONNX model has no state-dict wrapper or key layout "
                          "(leave export_key and export_layout out)")
  store.refuse_existing(out_path, "output file")
  if wrap_key == DEFAULT_WRAP:
    wrap_key = None if torch_io.is_safetensors_path(out_path) else "params"
  params, arch = load_generator(checkpoint_dir, which)
  try:
    state = params_to_torch(params, arch, layout)
  except CheckpointError as error:
    raise CheckpointError(f"{checkpoint_dir}: {error}") from error
  if to_onnx:
    onnx_export.write_onnx(out_path, state, arch, half, describe(arch))
  else:
    torch_io.write_state_dict(out_path, {wrap_key: state} if wrap_key else state)
  return arch
