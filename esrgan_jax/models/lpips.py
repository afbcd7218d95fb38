"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features") as a linen module.

The distance of the `lpips` package (v0.1) by R. Zhang, reproduced in Flax (NHWC):
  d(x, y) = sum_l mean_hw sum_c w_lc * (f_l(x)_c / |f_l(x)| - f_l(y)_c / |f_l(y)|)^2
where f_l are the ReLU outputs of an ImageNet backbone at five taps (AlexNet relu1..relu5 or
VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), |.| is the norm over channels (plus 1e-10),
w_l are the learned non-negative "lin" 1x1 convs, and the backbone sees the [-1, 1] images after
the package's ScalingLayer. Lower is more similar; d(x, x) = 0.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

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


def tap_channels(net: str) -> tuple[int, ...]:
  """Channels of each tap: the input width of lin0 ... lin4."""
  return tuple(stage[-1].features for stage in BACKBONE_STAGES[net])


def check_net(net: str) -> None:
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
  check_net(net)
  return next(size for size in range(1, 1024) if _spatial_size(net, size) > 0)


class LpipsBackbone(nn.Module):
  """AlexNet or VGG16 features; returns the five post-ReLU tap feature maps (NHWC)."""
  net: str = "alex"

  @nn.compact
  def __call__(self, x) -> list[jax.Array]:
    check_net(self.net)
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
