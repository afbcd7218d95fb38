"""RRDBNet, the ESRGAN generator: SRGAN's trunk with every residual block replaced by an RRDB.

Parameter names follow BasicSR's `RRDBNet` (conv_first, body_N/rdbK/convJ, conv_body, conv_up1,
conv_up2, conv_hr, conv_last) so that `weights/generator.py` maps PyTorch checkpoints one to one.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from esrgan_jax.models.initializers import scaled_kaiming_normal, torch_default_init
from esrgan_jax.models.shuffle import pixel_unshuffle, upsample_nearest

SUPPORTED_SCALES = (1, 2, 4)
LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
DENSE_INIT_SCALE = 0.1
DENSE_BLOCKS = ("concat", "fused")
DENSE_BLOCK_CHOICES = DENSE_BLOCKS + ("auto",)
# BasicSR's default_init_weights for the dense-block convs: kaiming normal x0.1, zero bias.
dense_kernel_init = scaled_kaiming_normal(DENSE_INIT_SCALE)


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def conv3x3(features: int, name: str, dtype: Any, in_features: int) -> nn.Conv:
  """A 3x3 conv that starts as torch.nn.Conv2d does (BasicSR leaves the trunk convs so)."""
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype,
                 param_dtype=jnp.float32, name=name, **torch_default_init(9 * in_features))


def dense_conv3x3(features: int, name: str, dtype: Any) -> nn.Conv:
  """A dense-block conv: kaiming normal x0.1 and zero bias (BasicSR's default_init_weights)."""
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), kernel_init=dense_kernel_init,
                 dtype=dtype, param_dtype=jnp.float32, name=name)


class DenseConvParams(nn.Module):
  """A dense-block conv's kernel and bias, initialised and named as `dense_conv3x3`'s, unapplied."""
  in_features: int
  features: int

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", dense_kernel_init, (3, 3, self.in_features, self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return kernel, bias


def same_conv3x3(x, kernel, preferred_element_type=None):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      preferred_element_type=preferred_element_type)


# What dense_block="auto" picks per platform (jax.default_backend()): the arrangement measured
# fastest there (benchmarks/RESULTS.md). benchmarks/gpu_suite.sh measures both on a GPU and prints
# the line to change here; a platform not listed gets "concat", BasicSR's own arrangement.
AUTO_DENSE_BLOCK = {
    # 2 CPU cores, 4 RRDBs x 64 features, fused / concat: psnr 1.21-1.27x, infer 1.12-1.47x,
    # gan 1.05-1.08x (benchmarks/benchmark.py, 2026-11-25).
    "cpu": "fused",
    "gpu": "concat",  # unmeasured -> concat
    "tpu": "concat",  # unmeasured -> concat
}


def resolve_dense_block(dense_block: str) -> str:
  """Turns "auto" into the arrangement measured fastest on this platform (AUTO_DENSE_BLOCK)."""
  if dense_block == "auto":
    return AUTO_DENSE_BLOCK.get(jax.default_backend(), "concat")
  if dense_block not in DENSE_BLOCKS:
    raise ValueError(f"model.dense_block must be one of {DENSE_BLOCK_CHOICES}, "
                     f"got {dense_block!r}")
  return dense_block


class ResidualDenseBlock(nn.Module):
  """Five densely connected 3x3 convs; the output is scaled by 0.2 and added to the input.

  Two arrangements of the same function and parameters (BasicSR's conv1..conv5 layout):
  - "concat": conv_i reads the concatenation of the input and every earlier output, as the paper
    draws it; each step copies the growing feature map into a new buffer.
  - "fused": nothing is concatenated. Conv_i is linear in its input channels, so each feature map
    is convolved once, as soon as it exists, with the slices of conv_i..conv5 that read it stacked
    along the output axis (64 -> 192, 32 -> 160, ..., 32 -> 64 channels), and the partial sums
    are accumulated. Same FLOPs, fewer and wider GEMMs, no growing copies.
  """
  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: Any = jnp.float32
  dense_block: str = "concat"

  @nn.compact
  def __call__(self, x):
    if self.dense_block == "fused":
      out_features = [self.num_grow_ch] * 4 + [self.num_feat]
      in_features = [self.num_feat + i * self.num_grow_ch for i in range(5)]
      convs = [DenseConvParams(in_features[i], out_features[i], name=f"conv{i + 1}")()
               for i in range(5)]
      return self.fused(x, convs) * RESIDUAL_SCALE + x
    features = [x]
    for i in range(1, 5):
      y = dense_conv3x3(self.num_grow_ch, f"conv{i}", self.dtype)(jnp.concatenate(features, -1))
      features.append(leaky_relu(y))
    out = dense_conv3x3(self.num_feat, "conv5", self.dtype)(jnp.concatenate(features, -1))
    return out * RESIDUAL_SCALE + x

  def fused(self, x, convs):
    # Partial sums stay in float32 so bf16 runs round once per conv output, as a single conv does.
    source, source_start, partial_sum = x, 0, None
    for i in range(5):
      source_width = source.shape[-1]
      stacked_kernel = jnp.concatenate(
          [kernel[:, :, source_start:source_start + source_width, :] for kernel, _ in convs[i:]],
          axis=-1).astype(self.dtype)
      contribution = same_conv3x3(source.astype(self.dtype), stacked_kernel, jnp.float32)
      partial_sum = contribution if partial_sum is None else partial_sum + contribution
      source_start += source_width
      if i < 4:
        bias = convs[i][1].astype(jnp.float32)
        source = leaky_relu(partial_sum[..., :self.num_grow_ch] + bias).astype(self.dtype)
        partial_sum = partial_sum[..., self.num_grow_ch:]
    return (partial_sum + convs[4][1]).astype(self.dtype)


class RRDB(nn.Module):
  """Residual-in-Residual Dense Block: three dense blocks inside one scaled residual connection."""
  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: Any = jnp.float32
  dense_block: str = "concat"

  @nn.compact
  def __call__(self, x):
    out = x
    for k in range(1, 4):
      out = ResidualDenseBlock(self.num_feat, self.num_grow_ch, self.dtype, self.dense_block,
                               name=f"rdb{k}")(out)
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
  dense_block: str = "auto"  # see ResidualDenseBlock; "auto" resolves per platform

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
    feat = conv3x3(self.num_feat, "conv_first", self.dtype, x.shape[-1])(x)
    block = nn.remat(RRDB) if self.remat_blocks else RRDB
    dense_block = resolve_dense_block(self.dense_block)
    body = feat
    for i in range(self.num_block):
      body = block(self.num_feat, self.num_grow_ch, self.dtype, dense_block, name=f"body_{i}")(body)
    feat = feat + conv3x3(self.num_feat, "conv_body", self.dtype, self.num_feat)(body)
    for name in ("conv_up1", "conv_up2"):
      feat = leaky_relu(conv3x3(self.num_feat, name, self.dtype, self.num_feat)(
          upsample_nearest(feat, 2)))
    feat = leaky_relu(conv3x3(self.num_feat, "conv_hr", self.dtype, self.num_feat)(feat))
    return conv3x3(self.num_out_ch, "conv_last", self.dtype, self.num_feat)(feat)
