"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), an optional metric.

The distance of the `lpips` package (v0.1) by R. Zhang, reproduced in Flax (NHWC):
  d(x, y) = sum_l mean_hw sum_c w_lc * (f_l(x)_c / |f_l(x)| - f_l(y)_c / |f_l(y)|)^2
where f_l are the ReLU outputs of an ImageNet backbone at five taps (AlexNet relu1..relu5 or
VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), |.| is the norm over channels (plus 1e-10),
w_l are the learned non-negative "lin" 1x1 convs, and the backbone sees the [-1, 1] images after
the package's ScalingLayer. Lower is more similar; d(x, x) = 0.

Weights come from two PyTorch files: the lpips wheel's `lpips/weights/v0.1/{alex,vgg}.pth`
(`lin0.model.1.weight` ... `lin4.model.1.weight`) and torchvision's ImageNet `alexnet` / `vgg16`
state dict (`features.N.weight/bias`). Convert them once, so evaluation runs without torch:
  python -m esrgan_jax.lpips --net alex --lin alex.pth --backbone alexnet-owt-7be5be79.pth -o DIR
then `LpipsMetric.from_dir(DIR)(sr_uint8, hr_uint8)` returns the distance of one image pair.
A full LPIPS `state_dict()` (with `net.sliceK.N.*` keys) may stand in for both files.
DIR is an Orbax composite checkpoint: DIR/params (the `LPIPS` module's params, float32) and
DIR/meta (JSON {"model": "LPIPS", "net": "alex" | "vgg", "version": "0.1"}).
"""

import argparse
import functools
import os
import re
import sys
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import linen as nn

from esrgan_jax import generator_io
from esrgan_jax.generator_io import CheckpointError

MODEL_NAME = "LPIPS"
VERSION = "0.1"
# The lpips package's ScalingLayer: maps [-1, 1] images to roughly ImageNet-normalised ones.
SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
# Added to the channel norm (not its square), as lpips.normalize_tensor does.
NORMALIZE_EPSILON = 1e-10


class Conv(NamedTuple):
  """A conv followed by ReLU, as in torchvision's `features` Sequential."""
  name: str
  features: int
  kernel: int = 3
  stride: int = 1
  padding: int = 1


class MaxPool(NamedTuple):
  window: int
  stride: int


def _vgg16_stage(block: int, num_convs: int, width: int) -> tuple:
  pool = (MaxPool(2, 2),) if block > 1 else ()
  return pool + tuple(Conv(f"conv{block}_{i}", width) for i in range(1, num_convs + 1))


# Each stage ends at one LPIPS tap (the ReLU after its last conv), and its layers are exactly those
# of the lpips package's `sliceK`: a max-pool opens a stage rather than closing the previous one.
BACKBONE_STAGES = {
    "alex": (
        (Conv("conv1", 64, 11, stride=4, padding=2),),
        (MaxPool(3, 2), Conv("conv2", 192, 5, padding=2)),
        (MaxPool(3, 2), Conv("conv3", 384)),
        (Conv("conv4", 256),),
        (Conv("conv5", 256),),
    ),
    "vgg": tuple(_vgg16_stage(*block) for block in
                 ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))),
}
NETS = tuple(BACKBONE_STAGES)
BACKBONE_NAMES = {"alex": "torchvision alexnet", "vgg": "torchvision vgg16"}


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


def tap_channels(net: str) -> tuple[int, ...]:
  """Channels of each tap: the input width of lin0 ... lin4."""
  return tuple(stage[-1].features for stage in BACKBONE_STAGES[net])


def _check_net(net: str) -> None:
  if net not in BACKBONE_STAGES:
    raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")


def _spatial_size(net: str, size: int) -> int:
  """Side of the last tap for an input side of `size`, or 0 when a layer would get no pixels."""
  for stage in BACKBONE_STAGES[net]:
    for layer in stage:
      window, stride, pad = ((layer.kernel, layer.stride, layer.padding) if isinstance(layer, Conv)
                             else (layer.window, layer.stride, 0))
      if size + 2 * pad < window:
        return 0
      size = (size + 2 * pad - window) // stride + 1
  return size


@functools.cache
def min_image_size(net: str) -> int:
  """Smallest image side the backbone accepts (31 for AlexNet, 16 for VGG16)."""
  _check_net(net)
  return next(size for size in range(1, 1024) if _spatial_size(net, size) > 0)


# ------------------------------------------------------------------------------------------------
# The network.


class LpipsBackbone(nn.Module):
  """AlexNet or VGG16 features; returns the five post-ReLU tap feature maps (NHWC)."""
  net: str = "alex"

  @nn.compact
  def __call__(self, x) -> list[jax.Array]:
    _check_net(self.net)
    taps = []
    for stage in BACKBONE_STAGES[self.net]:
      for layer in stage:
        if isinstance(layer, MaxPool):
          x = nn.max_pool(x, (layer.window,) * 2, strides=(layer.stride,) * 2, padding="VALID")
        else:
          pad = ((layer.padding, layer.padding),) * 2
          x = nn.relu(nn.Conv(layer.features, (layer.kernel,) * 2, strides=(layer.stride,) * 2,
                              padding=pad, name=layer.name)(x))
      taps.append(x)
    return taps


def _unit_normalize(features):
  norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
  return features / (norm + NORMALIZE_EPSILON)


class LPIPS(nn.Module):
  """LPIPS distance of two NHWC batches in [-1, 1]; returns one float32 value per image pair."""
  net: str = "alex"

  @nn.compact
  def __call__(self, x0, x1) -> jax.Array:
    if x0.shape != x1.shape:
      raise ValueError(f"LPIPS compares images of one shape, got {x0.shape} and {x1.shape}")
    batch = x0.shape[0]
    x = jnp.concatenate([x0, x1]).astype(jnp.float32)  # one backbone pass for both sides
    x = (x - jnp.asarray(SCALING_SHIFT)) / jnp.asarray(SCALING_SCALE)
    taps = LpipsBackbone(self.net, name="backbone")(x)
    distance = jnp.zeros((batch,), jnp.float32)
    for k, features in enumerate(taps):
      features = _unit_normalize(features)
      squared_difference = jnp.square(features[:batch] - features[batch:])
      # The learned weighting is applied to the squared difference, as the package's lin layers are.
      weighted = nn.Conv(1, (1, 1), use_bias=False, name=f"lin{k}")(squared_difference)
      distance = distance + jnp.mean(weighted, axis=(1, 2, 3))
    return distance


def lpips_param_shapes(net: str) -> dict[str, Any]:
  """{'backbone': {conv: {'kernel': HWIO, 'bias': (out,)}}, 'linK': {'kernel': (1, 1, C, 1)}}."""
  _check_net(net)
  backbone, in_ch = {}, 3
  for stage in BACKBONE_STAGES[net]:
    for layer in stage:
      if isinstance(layer, Conv):
        backbone[layer.name] = {"kernel": (layer.kernel, layer.kernel, in_ch, layer.features),
                                "bias": (layer.features,)}
        in_ch = layer.features
  shapes = {"backbone": backbone}
  for k, channels in enumerate(tap_channels(net)):
    shapes[f"lin{k}"] = {"kernel": (1, 1, channels, 1)}
  return shapes


# ------------------------------------------------------------------------------------------------
# Computing distances.


def _as_unit_images(images, name: str) -> jax.Array:
  """uint8 [0, 255] or float [0, 1], NHWC or HWC -> float32 NHWC in [-1, 1]."""
  dtype = np.dtype(images.dtype)
  if dtype == np.uint8:
    images = jnp.asarray(images, jnp.float32) / 255.0
  elif np.issubdtype(dtype, np.floating):
    images = jnp.asarray(images, jnp.float32)
  else:
    raise ValueError(f"lpips_distance: {name} must be uint8 or float in [0, 1], got {dtype}")
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"lpips_distance: {name} must be RGB, NHWC or HWC, got shape {images.shape}")
  return images * 2.0 - 1.0


@functools.lru_cache(maxsize=8)
def _jitted_apply(module: LPIPS):
  return jax.jit(lambda params, x0, x1: module.apply({"params": params}, x0, x1))


def lpips_distance(module: LPIPS, params, img1, img2) -> np.ndarray:
  """Per-image LPIPS of two RGB batches (NHWC or one HWC image), uint8 or float in [0, 1]."""
  x0, x1 = _as_unit_images(img1, "img1"), _as_unit_images(img2, "img2")
  if x0.shape != x1.shape:
    raise ValueError(f"lpips_distance: images differ in shape, {x0.shape} vs {x1.shape}")
  smallest = min_image_size(module.net)
  if min(x0.shape[1:3]) < smallest:
    raise ValueError(f"lpips_distance: LPIPS-{module.net} needs images of at least "
                     f"{smallest}x{smallest} pixels, got {x0.shape[1]}x{x0.shape[2]}")
  return np.asarray(_jitted_apply(module)(params, x0, x1))


class LpipsMetric:
  """LPIPS of one SR image against its HR image, from a converted directory.

    metric = LpipsMetric.from_dir(config.eval.lpips_weights)
    value = metric(sr_uint8, hr_uint8)   # HxWx3 each; jitted once per image shape
  """

  def __init__(self, module: LPIPS, params):
    self.module = module
    self.params = jax.device_put(params, jax.local_devices()[0])

  @classmethod
  def from_dir(cls, path: str | os.PathLike) -> "LpipsMetric":
    return cls(*load_lpips_dir(path))

  @property
  def name(self) -> str:
    return f"lpips_{self.module.net}"

  def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
    return float(lpips_distance(self.module, self.params, sr, hr)[0])


# ------------------------------------------------------------------------------------------------
# PyTorch weights.


_LIN_KEY = re.compile(r"lin(\d+)\.model\.(\d+)\.weight")
# A full LPIPS state_dict() keeps the backbone as net.sliceK.N.* and the scaling constants too.
_SLICE_KEY = re.compile(r"net\.slice(\d+)\.(\d+)\.(weight|bias)")
_SCALING_KEYS = ("scaling_layer.shift", "scaling_layer.scale")


def _as_numpy(value, key: str, source: str) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().float().numpy()
  if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
    raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
  return np.asarray(value, np.float32)


def _take(state: Mapping[str, Any], key: str, torch_shape: tuple[int, ...], source: str,
          description: str) -> np.ndarray:
  if key not in state:
    raise CheckpointError(f"{source}: has no {key!r}, which {description} needs")
  value = _as_numpy(state[key], key, source)
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
    params[f"lin{k}"] = {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0))}
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
    kernel_shape = shapes[name]["kernel"]
    torch_kernel_shape = (kernel_shape[3], kernel_shape[2], kernel_shape[0], kernel_shape[1])
    weight = _take(state, f"{prefix}.weight", torch_kernel_shape, source, description)
    bias = _take(state, f"{prefix}.bias", shapes[name]["bias"], source, description)
    params[name] = {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), "bias": bias}
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
  _check_net(net)
  if backbone_state is None:
    if _backbone_key_style(lin_state) != "lpips":
      raise CheckpointError(f"{lin_source}: holds only lin layers; give the {BACKBONE_NAMES[net]} "
                            "ImageNet weights as the backbone file too")
    backbone_state, backbone_source = lin_state, lin_source
  lin_params = _lin_params_from_torch(net, lin_state, lin_source)  # the small file first
  return {"backbone": _backbone_params_from_torch(net, backbone_state, backbone_source),
          **lin_params}


def _read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
  from esrgan_jax import convert  # pylint: disable=import-outside-toplevel  (torch only here)
  return convert.unwrap_state_dict(convert.read_torch_checkpoint(path), str(path))


def load_lpips(net: str, lin_weights_path: str | os.PathLike,
               backbone_weights_path: str | os.PathLike | None) -> tuple[LPIPS, dict]:
  """(module, params) from the lpips package's lin .pth and torchvision's alexnet/vgg16 .pth.

  Imports torch (lazily); errors are one-line CheckpointErrors naming the file at fault.
  """
  _check_net(net)
  lin_state = _read_state_dict(lin_weights_path)
  backbone_state = (None if backbone_weights_path is None
                    else _read_state_dict(backbone_weights_path))
  params = lpips_params_from_torch(net, lin_state, backbone_state, str(lin_weights_path),
                                   None if backbone_weights_path is None
                                   else str(backbone_weights_path))
  return LPIPS(net), params


# ------------------------------------------------------------------------------------------------
# Converted directories (no torch needed to read them).


def _check_params(net: str, params, source: str) -> None:
  expected = jax.tree_util.tree_flatten_with_path(lpips_param_shapes(net),
                                                  is_leaf=lambda x: isinstance(x, tuple))[0]
  for path, shape in expected:
    node = params
    for key in path:
      node = node.get(key.key) if isinstance(node, Mapping) else None
    found = None if node is None else tuple(np.shape(node))
    if found != shape:
      name = "/".join(key.key for key in path)
      raise CheckpointError(f"{source}: LPIPS-{net} parameter {name} has shape {found}, "
                            f"needs {shape}")


def save_lpips(directory: str | os.PathLike, net: str, params) -> None:
  """Writes LPIPS params to a new directory that `load_lpips_dir` reads."""
  _check_net(net)
  path = epath.Path(directory)
  if path.exists():
    raise CheckpointError(f"{path}: output directory already exists")
  _check_params(net, params, str(path))
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  generator_io.save_params_and_json(path, params, "meta",
                                    {"model": MODEL_NAME, "net": net, "version": VERSION})


def load_lpips_dir(directory: str | os.PathLike) -> tuple[LPIPS, dict]:
  """(module, params) from a directory written by `convert_lpips` / `save_lpips`."""
  path = epath.Path(directory)
  if not path.exists():
    raise CheckpointError(f"{path}: no such LPIPS weights directory")
  if not path.is_dir():
    raise CheckpointError(f"{path}: is a file; convert LPIPS weights first with `python -m "
                          "esrgan_jax.lpips --net alex --lin alex.pth --backbone alexnet.pth "
                          "-o DIR`")
  if not generator_io.has_params_and_json(path, "meta"):
    raise CheckpointError(f"{path}: not a converted LPIPS directory (expected 'params' and 'meta' "
                          "entries, as written by python -m esrgan_jax.lpips)")
  params, meta = generator_io.restore_params_and_json(path, "meta", "LPIPS weights")
  if meta.get("model") != MODEL_NAME or meta.get("net") not in NETS:
    raise CheckpointError(f"{path}: holds {meta.get('model')!r} ({meta.get('net')!r}), not "
                          f"{MODEL_NAME} with a net in {NETS}")
  _check_params(meta["net"], params, str(path))
  return LPIPS(meta["net"]), params


def convert_lpips(net: str, lin_weights_path, backbone_weights_path, out_dir) -> None:
  """Reads the two .pth files (torch needed) and writes a directory that evaluation reads."""
  if epath.Path(out_dir).exists():  # fail before reading large files
    raise CheckpointError(f"{out_dir}: output directory already exists")
  _, params = load_lpips(net, lin_weights_path, backbone_weights_path)
  save_lpips(out_dir, net, params)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="esrgan_jax.lpips",
      description="Convert LPIPS weights (the lpips package's lin layers plus torchvision's "
                  "ImageNet backbone) into a directory for config.eval.lpips_weights.")
  parser.add_argument("--net", choices=NETS, required=True, help="backbone: alex or vgg")
  parser.add_argument("--lin", required=True,
                      help="the lpips package's lpips/weights/v0.1/{alex,vgg}.pth (or a full "
                           "LPIPS state_dict, which makes --backbone optional)")
  parser.add_argument("--backbone", default=None,
                      help="torchvision's ImageNet alexnet or vgg16 .pth (features.N.* keys)")
  parser.add_argument("-o", "--output", required=True, help="directory to write (must not exist)")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  try:
    convert_lpips(args.net, args.lin, args.backbone, args.output)
  except CheckpointError as error:
    message = " ".join(str(error).split())  # one line, whatever the underlying error said
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 1
  print(f"wrote {args.output}: LPIPS-{args.net} v{VERSION}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
