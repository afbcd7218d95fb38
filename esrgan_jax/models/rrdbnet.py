"""RRDBNet, the ESRGAN generator: SRGAN's trunk with every residual block replaced by an RRDB.

Parameter names follow BasicSR's `RRDBNet` (conv_first, body_N/rdbK/convJ, conv_body, conv_up1,
conv_up2, conv_hr, conv_last) so that `convert.py` maps PyTorch checkpoints one to one.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from esrgan_jax.models.initializers import scaled_kaiming_normal, torch_default_kernel

SUPPORTED_SCALES = (1, 2, 4)
LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
DENSE_INIT_SCALE = 0.1


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def conv3x3(features: int, name: str, dtype: Any, kernel_init=torch_default_kernel) -> nn.Conv:
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), kernel_init=kernel_init,
                 dtype=dtype, param_dtype=jnp.float32, name=name)


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
  """NHWC space-to-depth with PyTorch's channel order (c * f * f + row * f + col)."""
  n, h, w, c = x.shape
  if h % factor or w % factor:
    raise ValueError(f"pixel_unshuffle: image size {h}x{w} is not divisible by {factor}")
  x = x.reshape(n, h // factor, factor, w // factor, factor, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, h // factor, w // factor, c * factor * factor)


def upsample_nearest_x2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ResidualDenseBlock(nn.Module):
  """Five densely connected 3x3 convs; the output is scaled by 0.2 and added to the input."""
  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = scaled_kaiming_normal(DENSE_INIT_SCALE)
    features = [x]
    for i in range(1, 5):
      y = conv3x3(self.num_grow_ch, f"conv{i}", self.dtype, init)(jnp.concatenate(features, -1))
      features.append(leaky_relu(y))
    out = conv3x3(self.num_feat, "conv5", self.dtype, init)(jnp.concatenate(features, -1))
    return out * RESIDUAL_SCALE + x


class RRDB(nn.Module):
  """Residual-in-Residual Dense Block: three dense blocks inside one scaled residual connection."""
  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    out = x
    for k in range(1, 4):
      out = ResidualDenseBlock(self.num_feat, self.num_grow_ch, self.dtype, name=f"rdb{k}")(out)
    return out * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
  """ESRGAN generator, NHWC in and out, images in [0, 1].

  x1 and x2 models first fold pixels into channels (pixel-unshuffle by 4 or 2, as Real-ESRGAN's
  x2plus) and then share the x4 trunk with its two nearest-neighbour x2 upsampling stages.
  """
  num_in_ch: int = 3
  num_out_ch: int = 3
  scale: int = 4
  num_feat: int = 64
  num_block: int = 23
  num_grow_ch: int = 32
  dtype: Any = jnp.float32
  remat_blocks: bool = False

  @nn.compact
  def __call__(self, x):
    if self.scale not in SUPPORTED_SCALES:
      raise ValueError(f"RRDBNet.scale must be one of {SUPPORTED_SCALES}, got {self.scale}")
    if x.shape[-1] != self.num_in_ch:
      raise ValueError(f"RRDBNet expects NHWC input with {self.num_in_ch} channels, "
                       f"got shape {x.shape}")
    x = x.astype(self.dtype)
    if self.scale < 4:
      x = pixel_unshuffle(x, 4 // self.scale)
    feat = conv3x3(self.num_feat, "conv_first", self.dtype)(x)
    block = nn.remat(RRDB) if self.remat_blocks else RRDB
    body = feat
    for i in range(self.num_block):
      body = block(self.num_feat, self.num_grow_ch, self.dtype, name=f"body_{i}")(body)
    feat = feat + conv3x3(self.num_feat, "conv_body", self.dtype)(body)
    for name in ("conv_up1", "conv_up2"):
      feat = leaky_relu(conv3x3(self.num_feat, name, self.dtype)(upsample_nearest_x2(feat)))
    feat = leaky_relu(conv3x3(self.num_feat, "conv_hr", self.dtype)(feat))
    return conv3x3(self.num_out_ch, "conv_last", self.dtype)(feat)
