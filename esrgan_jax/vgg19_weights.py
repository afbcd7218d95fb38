"""ImageNet VGG19 weights for the perceptual loss, stored in Flax form so training needs no torch.

Convert torchvision's file once:
  python -m esrgan_jax.convert --vgg19 vgg19-dcbb9e9d.pth VGG19_DIR
then the trainer calls `load_vgg19_params(VGG19_DIR)`. A .pth path works too: it is converted on
the fly, which imports torch. Layout (an Orbax composite checkpoint):
  DIR/params  VGG19Features params {conv1_1 ... conv5_4: {kernel (HWIO), bias}}, float32
  DIR/meta    JSON {"model": "VGG19Features", "layers": [...]}
"""

import os
from typing import Sequence

import jax
import numpy as np
from etils import epath

from esrgan_jax import generator_io
from esrgan_jax.generator_io import CheckpointError
from esrgan_jax.models.vgg19 import VGG19_BLOCKS, VGG19_LAYERS

MODEL_NAME = "VGG19Features"


def vgg19_param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  """{layer: {'kernel': (3, 3, in, out), 'bias': (out,)}} for all sixteen convs."""
  shapes, in_ch = {}, 3
  for block, num_convs, width in VGG19_BLOCKS:
    for i in range(1, num_convs + 1):
      shapes[f"conv{block}_{i}"] = {"kernel": (3, 3, in_ch, width), "bias": (width,)}
      in_ch = width
  return shapes


def check_vgg19_params(params, source: str) -> None:
  """Raises CheckpointError naming `source` unless `params` holds every VGG19 conv, right-shaped."""
  expected = vgg19_param_shapes()
  missing = [layer for layer in expected if layer not in params]
  if missing:
    raise CheckpointError(f"{source}: VGG19 params lack layer(s) {missing}")
  for layer, leaves in expected.items():
    for leaf, shape in leaves.items():
      value = params[layer].get(leaf) if hasattr(params[layer], "get") else None
      if value is None or tuple(np.shape(value)) != shape:
        found = None if value is None else tuple(np.shape(value))
        raise CheckpointError(f"{source}: VGG19 {layer}/{leaf} has shape {found}, needs {shape}")


def save_vgg19_params(directory: str | os.PathLike, params) -> None:
  """Writes converted VGG19 params to a new directory."""
  path = epath.Path(directory)
  if path.exists():
    raise CheckpointError(f"{path}: output directory already exists")
  check_vgg19_params(params, str(path))
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  generator_io.save_params_and_json(path, params, "meta",
                                    {"model": MODEL_NAME, "layers": list(VGG19_LAYERS)})


def load_vgg19_params(path: str | os.PathLike, layers: Sequence[str] | None = None) -> dict:
  """VGG19Features params from a directory written by `save_vgg19_params` or from a .pth file.

  All sixteen convs by default; with `layers`, only those that VGG19Features(layers=layers)
  builds (up to the deepest one), so the tree matches that module's own.
  """
  params = _load_all_vgg19_params(epath.Path(path))
  if layers is None:
    return params
  unknown = [name for name in layers if name not in VGG19_LAYERS]
  if unknown or not layers:
    raise ValueError(f"load_vgg19_params: layers must be a non-empty subset of {VGG19_LAYERS}, "
                     f"got {list(layers)}")
  deepest = max(VGG19_LAYERS.index(name) for name in layers)
  return {name: params[name] for name in VGG19_LAYERS[:deepest + 1]}


def _load_all_vgg19_params(path: epath.Path) -> dict:
  if not path.exists():
    raise CheckpointError(f"{path}: no such VGG19 weights file or directory")
  if not path.is_dir():
    from esrgan_jax import convert  # pylint: disable=import-outside-toplevel
    state = convert.unwrap_state_dict(convert.read_torch_checkpoint(path), str(path))
    return convert.vgg19_params_from_torch(state, str(path))
  if not generator_io.has_params_and_json(path, "meta"):
    raise CheckpointError(f"{path}: not a converted VGG19 directory (expected 'params' and 'meta'"
                          " entries, as written by python -m esrgan_jax.convert --vgg19)")
  params, meta = generator_io.restore_params_and_json(path, "meta", "VGG19 weights")
  if meta.get("model") != MODEL_NAME:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r}, not {MODEL_NAME}")
  check_vgg19_params(params, str(path))
  return params
