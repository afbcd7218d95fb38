"""VGG19 feature extractor for the perceptual loss, returning features *before* their ReLU.

Layer names are conv1_1 ... conv5_4; `TORCHVISION_FEATURE_INDEX` maps each to its index in
torchvision's `vgg19().features`, which `weights/vgg19.py` uses to import ImageNet weights.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (block, number of convs, width) of VGG19's configuration "E".
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
VGG19_LAYERS = tuple(f"conv{b}_{i}" for b, n, _ in VGG19_BLOCKS for i in range(1, n + 1))


def _torchvision_indices():
  # torchvision's `features` is conv, relu, ..., maxpool per block; convs sit at even offsets.
  indices, position = {}, 0
  for block, num_convs, _ in VGG19_BLOCKS:
    for i in range(1, num_convs + 1):
      indices[f"conv{block}_{i}"] = position
      position += 2
    position += 1
  return indices


TORCHVISION_FEATURE_INDEX = _torchvision_indices()


class VGG19Features(nn.Module):
  """Returns {layer_name: pre-activation feature map} for each requested layer (NHWC).

  Only the layers up to the deepest requested one are built, so conv5_4 alone never computes the
  classifier or the last max-pool. Input is RGB in [0, 1], or [-1, 1] with `range_norm`.
  """
  layers: Sequence[str] = ("conv5_4",)
  use_input_norm: bool = True
  range_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x) -> dict[str, jax.Array]:
    unknown = [name for name in self.layers if name not in VGG19_LAYERS]
    if unknown:
      raise ValueError(f"VGG19Features.layers: unknown layer(s) {unknown}; "
                       f"choose from {list(VGG19_LAYERS)}")
    deepest = max(VGG19_LAYERS.index(name) for name in self.layers)
    x = x.astype(jnp.float32)
    if self.range_norm:
      x = (x + 1.0) / 2.0
    if self.use_input_norm:
      x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    x = x.astype(self.dtype)
    outputs = {}
    for block, num_convs, width in VGG19_BLOCKS:
      if block > 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for i in range(1, num_convs + 1):
        name = f"conv{block}_{i}"
        x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    param_dtype=jnp.float32, name=name)(x)
        if name in self.layers:
          outputs[name] = x
        if VGG19_LAYERS.index(name) == deepest:
          return outputs
        x = nn.relu(x)
    return outputs
