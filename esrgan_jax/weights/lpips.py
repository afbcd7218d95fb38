"""LPIPS weights on disk: the lpips package's and torchvision's .pth files, converted directories.

Weights come from two PyTorch files: the lpips wheel's `lpips/weights/v0.1/{alex,vgg}.pth`
(`lin0.model.1.weight` ... `lin4.model.1.weight`) and torchvision's ImageNet `alexnet` / `vgg16`
state dict (`features.N.weight/bias`). A full LPIPS `state_dict()` (with `net.sliceK.N.*` keys)
may stand in for both. Convert them once, so evaluation runs without torch:
  python -m esrgan_jax.convert --lpips alex --lin alex.pth --backbone alexnet-owt-7be5be79.pth DIR
DIR is a store directory (`weights/store.py`) with the `LPIPS` module's params and the JSON
`meta` {"model": "LPIPS", "net": "alex" | "vgg", "version": "0.1"}.
"""

import functools
import os
import re
from typing import Any, Mapping

import numpy as np

from esrgan_jax.models.lpips import BACKBONE_STAGES, LPIPS, NETS, Conv, check_net, min_image_size
from esrgan_jax.models.lpips import tap_channels
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

MODEL_NAME = "LPIPS"
VERSION = "0.1"
BACKBONE_NAMES = {"alex": "torchvision alexnet", "vgg": "torchvision vgg16"}
_WRITTEN_BY = "python -m esrgan_jax.convert --lpips"
_LIN_KEY = re.compile(r"lin(\d+)\.model\.(\d+)\.weight")
# A full LPIPS state_dict() keeps the backbone as net.sliceK.N.* and the scaling constants too.
_SLICE_KEY = re.compile(r"net\.slice(\d+)\.(\d+)\.(weight|bias)")
_SCALING_KEYS = ("scaling_layer.shift", "scaling_layer.scale")


@functools.cache
def lpips_param_shapes(net: str) -> dict[str, Any]:
  """{'backbone': {conv: {'kernel', 'bias'}}, 'linK': {'kernel'}} as shape tuples."""
  check_net(net)
  size = min_image_size(net)
  return trees.shape_tree(LPIPS(net), (1, size, size, 3), (1, size, size, 3))["params"]


def _torchvision_layout(net: str) -> dict[str, tuple[int, int]]:
  """{conv name: (stage index, index in torchvision's `features`)}; conv and ReLU take 2 slots."""
  layout, position = {}, 0
  for stage, layers in enumerate(BACKBONE_STAGES[net]):
    for layer in layers:
      if isinstance(layer, Conv):
        layout[layer.name] = (stage, position)
        position += 2
      else:
        position += 1
  return layout


def _take(state: Mapping[str, Any], key: str, torch_shape: tuple[int, ...], source: str,
          description: str) -> np.ndarray:
  if key not in state:
    raise CheckpointError(f"{source}: has no {key!r}, which {description} needs")
  value = torch_io.as_numpy(state[key], key, source).astype(np.float32)
  if value.shape != torch_shape:
    raise CheckpointError(f"{source}: {key} has shape {value.shape}, {description} needs "
                          f"{torch_shape}")
  return value


def _lin_params_from_torch(net: str, state: Mapping[str, Any], source: str) -> dict:
  """linK kernels from the lpips package's `linK.model.1.weight` (`model.0` without dropout)."""
  description = f"the LPIPS-{net} head"
  found = {}
  for key in state:
    match = _LIN_KEY.fullmatch(key)
    if match:
      found.setdefault(int(match.group(1)), []).append(key)
    elif not (key in _SCALING_KEYS or _SLICE_KEY.fullmatch(key)):
      raise CheckpointError(f"{source}: unexpected key {key!r} for {description} (expected "
                            "lin0.model.1.weight ... from the lpips package)")
  params = {}
  for k, channels in enumerate(tap_channels(net)):
    keys = found.pop(k, [f"lin{k}.model.1.weight"])
    if len(keys) > 1:
      raise CheckpointError(f"{source}: holds several weights for lin{k}: {sorted(keys)}")
    weight = _take(state, keys[0], (1, channels, 1, 1), source, description)
    params[f"lin{k}"] = {"kernel": np.ascontiguousarray(torch_io.conv_kernel_from_torch(weight))}
  if found:
    extra = sorted(f"lin{k}" for k in found)
    raise CheckpointError(f"{source}: has {extra}, which {description} does not have "
                          f"(is it another net's file?)")
  return params


def _backbone_key_style(state: Mapping[str, Any]) -> str:
  if any(_SLICE_KEY.fullmatch(key) for key in state):
    return "lpips"
  return "features." if any(key.startswith("features.") for key in state) else ""


def _backbone_params_from_torch(net: str, state: Mapping[str, Any], source: str) -> dict:
  """Conv params from torchvision's `features.N.*` (or bare `N.*`, or LPIPS's `net.sliceK.N.*`)."""
  description = f"LPIPS-{net}'s {BACKBONE_NAMES[net]} backbone"
  style = _backbone_key_style(state)
  shapes = lpips_param_shapes(net)["backbone"]
  params, used = {}, set()
  for name, (stage, index) in _torchvision_layout(net).items():
    prefix = f"net.slice{stage + 1}.{index}" if style == "lpips" else f"{style}{index}"
    torch_kernel_shape = torch_io.conv_kernel_to_torch(np.empty(shapes[name]["kernel"])).shape
    weight = _take(state, f"{prefix}.weight", torch_kernel_shape, source, description)
    bias = _take(state, f"{prefix}.bias", shapes[name]["bias"], source, description)
    params[name] = {"kernel": np.ascontiguousarray(torch_io.conv_kernel_from_torch(weight)),
                    "bias": bias}
    used.update((f"{prefix}.weight", f"{prefix}.bias"))
  if style != "lpips":
    extra = [k for k in state if k not in used and not k.startswith("classifier.")]
    if extra:
      raise CheckpointError(f"{source}: unexpected key(s) {extra[:5]} for {description} "
                            f"(is it another network's file?)")
  return params


def lpips_params_from_torch(net: str, lin_state: Mapping[str, Any],
                            backbone_state: Mapping[str, Any] | None = None,
                            lin_source: str = "lin state dict",
                            backbone_source: str = "backbone state dict") -> dict:
  """LPIPS params from state dicts (numpy arrays or torch tensors).

  Without `backbone_state`, `lin_state` must be a full LPIPS state_dict() holding the backbone.
  """
  check_net(net)
  if backbone_state is None:
    if _backbone_key_style(lin_state) != "lpips":
      raise CheckpointError(f"{lin_source}: holds only lin layers; give the {BACKBONE_NAMES[net]} "
                            "ImageNet weights as the backbone file too")
    backbone_state, backbone_source = lin_state, lin_source
  lin_params = _lin_params_from_torch(net, lin_state, lin_source)  # the small file first
  return {"backbone": _backbone_params_from_torch(net, backbone_state, backbone_source),
          **lin_params}


def load_lpips(net: str, lin_weights_path: str | os.PathLike,
               backbone_weights_path: str | os.PathLike | None) -> tuple[LPIPS, dict]:
  """(module, params) from the lpips package's lin .pth and torchvision's alexnet/vgg16 .pth.

  Imports torch (lazily); errors are one-line CheckpointErrors naming the file at fault.
  """
  check_net(net)
  lin_state = torch_io.read_state_dict(lin_weights_path)
  backbone_state = (None if backbone_weights_path is None
                    else torch_io.read_state_dict(backbone_weights_path))
  params = lpips_params_from_torch(net, lin_state, backbone_state, str(lin_weights_path),
                                   None if backbone_weights_path is None
                                   else str(backbone_weights_path))
  return LPIPS(net), params


def _check_params(net: str, params, source: str) -> None:
  difference = trees.tree_difference(lpips_param_shapes(net), params, f"LPIPS-{net}", "directory")
  if difference:
    raise CheckpointError(f"{source}: does not fit LPIPS-{net}: {difference}")


def save_lpips(directory: str | os.PathLike, net: str, params) -> None:
  """Writes LPIPS params to a new directory that `load_lpips_dir` reads."""
  check_net(net)
  _check_params(net, params, str(directory))
  store.save(directory, params, "meta", {"model": MODEL_NAME, "net": net, "version": VERSION})


def load_lpips_dir(directory: str | os.PathLike) -> tuple[LPIPS, dict]:
  """(module, params) from a directory written by `convert_lpips` / `save_lpips`."""
  path = store.open_directory(directory, "meta", "LPIPS", _WRITTEN_BY)
  params, meta = store.restore(path, "meta", "LPIPS weights")
  if meta.get("model") != MODEL_NAME or meta.get("net") not in NETS:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r} ({meta.get('net')!r}), not "
                          f"{MODEL_NAME} with a net in {NETS}")
  _check_params(meta["net"], params, str(path))
  return LPIPS(meta["net"]), params


def convert_lpips(net: str, lin_weights_path, backbone_weights_path, out_dir) -> None:
  """Reads the two .pth files (torch needed) and writes a directory that evaluation reads."""
  store.refuse_existing(out_dir)  # fail before reading large files
  _, params = load_lpips(net, lin_weights_path, backbone_weights_path)
  save_lpips(out_dir, net, params)
