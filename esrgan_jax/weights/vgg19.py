"""ImageNet VGG19 weights for the perceptual loss: torchvision's .pth in, a store directory out.

Convert torchvision's file once:
  python -m esrgan_jax.convert --vgg19 vgg19-dcbb9e9d.pth VGG19_DIR
then the trainer calls `load_vgg19_params(VGG19_DIR)`, without torch. A .pth path works too: it is
converted on the fly, which imports torch. VGG19_DIR is a store directory (`weights/store.py`)
with VGG19Features' params {conv1_1 ... conv5_4: {kernel (HWIO), bias}} and the JSON `meta`
{"model": "VGG19Features", "layers": [...]}.
"""

import os
from typing import Any, Mapping, Sequence

from etils import epath

from esrgan_jax.models import VGG19Features
from esrgan_jax.models.vgg19 import TORCHVISION_FEATURE_INDEX, VGG19_LAYERS
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

MODEL_NAME = "VGG19Features"
_WRITTEN_BY = "python -m esrgan_jax.convert --vgg19"
_ALL_LAYERS = VGG19Features(layers=(VGG19_LAYERS[-1],))
_INPUT_SHAPE = (1, 32, 32, 3)


def vgg19_params_from_torch(state_dict: Mapping[str, Any], source: str = "state dict") -> dict:
  """VGG19Features params (conv1_1 ... conv5_4) from torchvision's vgg19 state dict.

  Reads `features.N.weight/bias` and ignores the classifier; a bare `features` state dict
  (`N.weight`) works too.
  """
  prefix = "features." if any(k.startswith("features.") for k in state_dict) else ""
  entries = [torch_io.leaf_entry(path[1:], f"{prefix}{TORCHVISION_FEATURE_INDEX[path[1]]}", shape)
             for path, shape in trees.variable_shapes(_ALL_LAYERS, _INPUT_SHAPE).items()]
  return torch_io.import_entries(state_dict, entries, source, "torchvision VGG19 features",
                                 ignore=lambda key: key.startswith("classifier."))


def _check(params, source: str) -> None:
  expected = trees.shape_tree(_ALL_LAYERS, _INPUT_SHAPE)
  difference = trees.tree_difference(expected["params"], params, MODEL_NAME, "directory")
  if difference:
    raise CheckpointError(f"{source}: does not fit {MODEL_NAME}: {difference}")


def save_vgg19_params(directory: str | os.PathLike, params) -> None:
  """Writes converted VGG19 params to a new directory."""
  _check(params, str(directory))
  store.save(directory, params, "meta", {"model": MODEL_NAME, "layers": list(VGG19_LAYERS)})


def load_vgg19_params(path: str | os.PathLike, layers: Sequence[str] | None = None) -> dict:
  """VGG19Features params from a directory written by `save_vgg19_params` or from a .pth file.

  All sixteen convs by default; with `layers`, only those that VGG19Features(layers=layers)
  builds (up to the deepest one), so the tree matches that module's own.
  """
  params = _load_all(epath.Path(path))
  if layers is None:
    return params
  unknown = [name for name in layers if name not in VGG19_LAYERS]
  if unknown or not layers:
    raise ValueError(f"load_vgg19_params: layers must be a non-empty subset of {VGG19_LAYERS}, "
                     f"got {list(layers)}")
  deepest = max(VGG19_LAYERS.index(name) for name in layers)
  return {name: params[name] for name in VGG19_LAYERS[:deepest + 1]}


def _load_all(path: epath.Path) -> dict:
  if path.exists() and not path.is_dir():
    return vgg19_params_from_torch(torch_io.read_state_dict(path), str(path))
  path = store.open_directory(path, "meta", "VGG19", _WRITTEN_BY)
  params, meta = store.restore(path, "meta", "VGG19 weights")
  if meta.get("model") != MODEL_NAME:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r}, not {MODEL_NAME}")
  _check(params, str(path))
  return params


def convert_vgg19(in_path, out_dir) -> None:
  """torchvision's vgg19 .pth -> a directory the trainer reads without torch."""
  store.refuse_existing(out_dir)
  save_vgg19_params(out_dir, vgg19_params_from_torch(torch_io.read_state_dict(in_path),
                                                     str(in_path)))
