"""DISTS weights on disk: dists-pytorch's and torchvision's files in, converted directories out.

Weights come from two PyTorch files: the dists-pytorch wheel's `DISTS_pytorch/weights.pt`
({'alpha', 'beta'}, each (1, 1475, 1, 1)) and torchvision's ImageNet `vgg16` state dict
(`features.N.weight/bias`). A full DISTS `state_dict()` (with `stageK.N.*` keys and alpha, beta)
may stand in for both. Convert them once, so evaluation runs without torch:
  python -m esrgan_jax.convert --dists weights.pt DIR --backbone vgg16-397923af.pth
DIR is a store directory (`weights/store.py`) with the `DISTS` module's params and the JSON
`meta` {"model": "DISTS", "version": "0.1"}.
"""

import functools
import os
import re
from typing import Any, Mapping

import numpy as np

from esrgan_jax.models.dists import CONV_NAMES, DISTS, NUM_CHANNELS, VGG16_BLOCKS, min_image_size
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.store import CheckpointError

MODEL_NAME = "DISTS"
VERSION = "0.1"
_WRITTEN_BY = "python -m esrgan_jax.convert --dists"
_WEIGHT_KEYS = ("alpha", "beta")
_DESCRIPTION = "DISTS's torchvision vgg16 backbone"
# What else a full DISTS state_dict() holds: its L2 pooling windows and the ImageNet statistics,
# which the module has as constants.
_STAGE_KEY = re.compile(r"stage(\d)\.(\d+)\.(weight|bias|filter)")
_CONSTANT_KEYS = ("mean", "std")


@functools.cache
def dists_param_shapes() -> dict[str, Any]:
  """{'backbone': {conv: {'kernel', 'bias'}}, 'alpha': (1475,), 'beta': (1475,)}."""
  size = min_image_size()
  return trees.shape_tree(DISTS(), (1, size, size, 3), (1, size, size, 3))["params"]


def torchvision_layout() -> dict[str, tuple[int, int]]:
  """{conv name: (DISTS stage 1..5, index in torchvision's vgg16 `features`)}.

  Each conv and its ReLU take two slots, each pool one; DISTS's `stageK` keeps those indices.
  """
  layout, position = {}, 0
  names = iter(CONV_NAMES)
  for stage, (convs, _) in enumerate(VGG16_BLOCKS, 1):
    position += stage > 1  # the pool that opens the block
    for _ in range(convs):
      layout[next(names)] = (stage, position)
      position += 2
  return layout


def _weights_from_torch(state: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
  """alpha and beta, as (1475,) vectors, from the package's weights.pt (or a full state_dict)."""
  description = "DISTS's alpha and beta (the dists-pytorch package's weights.pt)"
  extra = [k for k in state if k not in _WEIGHT_KEYS + _CONSTANT_KEYS
           and not _STAGE_KEY.fullmatch(k)]
  if extra:
    raise CheckpointError(f"{source}: unexpected key(s) {trees.preview(extra)} for "
                          f"{description}")
  weights = {}
  for key in _WEIGHT_KEYS:
    if key not in state:
      raise CheckpointError(f"{source}: has no {key!r}, which {description} needs")
    value = torch_io.as_numpy(state[key], key, source).astype(np.float32)
    if value.shape != (1, NUM_CHANNELS, 1, 1):
      raise CheckpointError(f"{source}: {key} has shape {value.shape}, {description} needs "
                            f"{(1, NUM_CHANNELS, 1, 1)}")
    weights[key] = value.reshape(NUM_CHANNELS)
  total = float(weights["alpha"].sum() + weights["beta"].sum())
  # DISTS divides by this sum: anything else gives NaN or a score of the wrong sign.
  if not np.isfinite(total) or total <= 0:
    raise CheckpointError(f"{source}: alpha and beta sum to {total}, which DISTS divides by; "
                          "it must be positive")
  return weights


def _backbone_from_torch(state: Mapping[str, Any], source: str) -> dict:
  """Conv params from torchvision's `features.N.*` (or bare `N.*`, or DISTS's `stageK.N.*`)."""
  full_dists = any(_STAGE_KEY.fullmatch(key) for key in state)
  style = "features." if any(key.startswith("features.") for key in state) else ""
  shapes = dists_param_shapes()["backbone"]
  entries = []
  for name, (stage, index) in torchvision_layout().items():
    prefix = f"stage{stage}.{index}" if full_dists else f"{style}{index}"
    entries += [torch_io.leaf_entry((name, leaf), prefix, shapes[name][leaf])
                for leaf in ("kernel", "bias")]
  if full_dists:
    ignore = lambda key: not key.startswith("stage") or key.endswith(".filter")
  else:
    ignore = lambda key: key.startswith("classifier.")  # torchvision files carry one
  return torch_io.import_entries(state, entries, source, _DESCRIPTION, ignore=ignore)


def dists_params_from_torch(weights_state: Mapping[str, Any],
                            backbone_state: Mapping[str, Any] | None = None,
                            weights_source: str = "alpha/beta state dict",
                            backbone_source: str = "backbone state dict") -> dict:
  """DISTS params from state dicts (numpy arrays or torch tensors).

  Without `backbone_state`, `weights_state` must be a full DISTS state_dict() holding the backbone.
  """
  if backbone_state is None:
    if not any(_STAGE_KEY.fullmatch(key) for key in weights_state):
      raise CheckpointError(f"{weights_source}: holds only alpha and beta; give torchvision's "
                            "ImageNet vgg16 weights as the backbone file too")
    backbone_state, backbone_source = weights_state, weights_source
  weights = _weights_from_torch(weights_state, weights_source)  # the small file first
  return {"backbone": _backbone_from_torch(backbone_state, backbone_source), **weights}


def load_dists(weights_path: str | os.PathLike,
               backbone_path: str | os.PathLike | None) -> tuple[DISTS, dict]:
  """(module, params) from the package's weights.pt and torchvision's vgg16 .pth.

  Imports torch (lazily); errors are one-line CheckpointErrors naming the file at fault.
  """
  weights_state = torch_io.read_state_dict(weights_path)
  backbone_state = None if backbone_path is None else torch_io.read_state_dict(backbone_path)
  params = dists_params_from_torch(weights_state, backbone_state, str(weights_path),
                                   None if backbone_path is None else str(backbone_path))
  return DISTS(), params


def _check_params(params, source: str) -> None:
  difference = trees.tree_difference(dists_param_shapes(), params, MODEL_NAME, "directory")
  if difference:
    raise CheckpointError(f"{source}: does not fit {MODEL_NAME}: {difference}")


def save_dists(directory: str | os.PathLike, params) -> None:
  """Writes DISTS params to a new directory that `load_dists_dir` reads."""
  _check_params(params, str(directory))
  store.save(directory, params, "meta", {"model": MODEL_NAME, "version": VERSION})


def load_dists_dir(directory: str | os.PathLike) -> tuple[DISTS, dict]:
  """(module, params) from a directory written by `convert_dists` / `save_dists`."""
  path = store.open_directory(directory, "meta", MODEL_NAME, _WRITTEN_BY)
  params, meta = store.restore(path, "meta", "DISTS weights")
  if meta.get("model") != MODEL_NAME:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r}, not {MODEL_NAME}")
  _check_params(params, str(path))
  return DISTS(), params


def convert_dists(weights_path, backbone_path, out_dir) -> None:
  """Reads the two files (torch needed) and writes a directory that evaluation reads."""
  store.refuse_existing(out_dir)  # fail before reading large files
  _, params = load_dists(weights_path, backbone_path)
  save_dists(out_dir, params)
