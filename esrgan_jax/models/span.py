"""SPAN, the Swift Parameter-free Attention Network (NTIRE 2024 efficient-SR winner), NHWC.

Computes what the official SPAN code and spandrel's copy compute. Every 3x3 conv of SPAN is a
Conv3XC, which exists in two forms with the same function:
  branch form (deploy=False, for training)  conv.0 (1x1, c_in -> 2 c_in), conv.1 (3x3 valid,
      2 c_in -> 2 c_out) and conv.2 (1x1, 2 c_out -> c_out) on the input zero-padded by one
      pixel, plus the 1x1 skip `sk`;
  folded form (deploy=True, for inference)  one 3x3 conv `eval_conv` with padding 1; `fold`
      computes its kernel and bias from the branches.
The fold is exact at the image border too: the input is padded before conv.0, so conv.0's
output there is its bias, which the folded bias counts for every tap.

Parameter paths joined by "." are the PyTorch state-dict keys (conv_1.conv.0, conv_1.sk,
block_1.c1_r.eval_conv, conv_cat, upsampler.0, ...). spandrel's state dicts carry both forms and
a `no_norm` buffer when the input is not normalised (norm=False here); spandrel recomputes
eval_conv from the branches at every eval forward, so a stored eval_conv is not to be trusted.
"""

from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from esrgan_jax.models.initializers import torch_default_init
from esrgan_jax.models.shuffle import pixel_shuffle

SPAB_COUNT = 6
CONV3XC_GAIN = 2  # Conv3XC's inner width is this times its input / output width (gain1=2)
DEFAULT_RGB_MEAN = (0.4488, 0.4371, 0.4040)
# One output pixel depends on LR input pixels this far away on each side: conv_1, three Conv3XCs
# per SPAB and conv_2 are 3x3 each (in either form), conv_cat is 1x1 and the upsampler's conv 3x3.
RECEPTIVE_RADIUS = 1 + 3 * SPAB_COUNT + 1 + 1


def receptive_radius() -> int:
  """LR pixels on each side that one output pixel may depend on, at every upscale.

  Everything before the pixel shuffle runs at LR resolution, so the scale does not enter; a tile
  pad at least this makes tiled output equal whole-image output.
  """
  return RECEPTIVE_RADIUS


def _conv(features: int, size: int, in_features: int, name: str, dtype: Any,
          padding: Any = "SAME") -> nn.Conv:
  """A size x size conv, initialised as a fresh torch.nn.Conv2d (SPAN does nothing special)."""
  return nn.Conv(features, (size, size), padding=padding, dtype=dtype, param_dtype=jnp.float32,
                 name=name, **torch_default_init(size * size * in_features))


class _Branches(nn.Module):
  """Conv3XC's `conv` Sequential: 1x1 widen, 3x3 valid, 1x1 narrow, on the padded input."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    in_features = x.shape[-1]
    wide_in, wide_out = CONV3XC_GAIN * in_features, CONV3XC_GAIN * self.features
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = _conv(wide_in, 1, in_features, "0", self.dtype)(x)
    x = _conv(wide_out, 3, wide_in, "1", self.dtype, padding="VALID")(x)
    return _conv(self.features, 1, wide_out, "2", self.dtype)(x)


class Conv3XC(nn.Module):
  """A 3x3 conv (padding 1) that trains as three convs plus a 1x1 skip; see the module doc."""
  features: int
  deploy: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    in_features = x.shape[-1]
    if self.deploy:
      return _conv(self.features, 3, in_features, "eval_conv", self.dtype)(x)
    skip = _conv(self.features, 1, in_features, "sk", self.dtype)(x)
    return _Branches(self.features, self.dtype, name="conv")(x) + skip


class SPAB(nn.Module):
  """Swift parameter-free attention block; returns (output, SiLU of c1_r's output).

  The reference returns c1_r's output, but its SiLU runs in place, on that very tensor, before the
  return: what SPAN concatenates is the activated one.
  """
  features: int
  deploy: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda name: Conv3XC(self.features, self.deploy, self.dtype, name=name)
    out1 = nn.silu(conv("c1_r")(x))
    out3 = conv("c3_r")(nn.silu(conv("c2_r")(out1)))
    # The attention is parameter-free: the block's own output, centred sigmoid.
    attention = nn.sigmoid(out3) - 0.5
    return (out3 + x) * attention, out1


class _Upsampler(nn.Module):
  """spandrel's `upsampler` Sequential: `0` the 3x3 conv to out * s^2 channels, then shuffle."""
  num_out_ch: int
  upscale: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = self.num_out_ch * self.upscale**2
    x = _conv(channels, 3, x.shape[-1], "0", self.dtype)(x)
    return pixel_shuffle(x, self.upscale)


class SPAN(nn.Module):
  """SPAN, NHWC in and out, images in [0, 1]; the output is not shifted back by the mean.

  `bias` is accepted and ignored, as the reference code does (every conv has a bias). With
  `norm` the input is mapped to (x - rgb_mean) * img_range first (spandrel's `no_norm` state
  dicts mean norm=False). `deploy` picks the folded Conv3XC form (see `fold`).
  """
  num_in_ch: int = 3
  num_out_ch: int = 3
  feature_channels: int = 48
  upscale: int = 4
  bias: bool = True
  img_range: float = 255.0
  rgb_mean: Sequence[float] = DEFAULT_RGB_MEAN
  norm: bool = True
  deploy: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if not isinstance(self.upscale, int) or self.upscale < 1:
      raise ValueError(f"SPAN.upscale must be a positive integer, got {self.upscale!r}")
    if x.shape[-1] != self.num_in_ch:
      raise ValueError(f"SPAN expects NHWC input with {self.num_in_ch} channels, "
                       f"got shape {x.shape}")
    if self.norm:
      if len(self.rgb_mean) != self.num_in_ch:
        raise ValueError(f"SPAN: rgb_mean has {len(self.rgb_mean)} values for "
                         f"{self.num_in_ch} input channels (use norm=False)")
      # In float32: the normalised values reach +-140, where bfloat16 steps are 0.5 wide.
      mean = jnp.asarray(self.rgb_mean, jnp.float32)
      x = (x.astype(jnp.float32) - mean) * self.img_range
    x = x.astype(self.dtype)

    features = self.feature_channels
    conv3xc = lambda name: Conv3XC(features, self.deploy, self.dtype, name=name)
    out_feature = conv3xc("conv_1")(x)
    out_b1, _ = SPAB(features, self.deploy, self.dtype, name="block_1")(out_feature)
    out = out_b1
    for i in range(2, SPAB_COUNT):
      out, _ = SPAB(features, self.deploy, self.dtype, name=f"block_{i}")(out)
    out_b6, out_b6_c1 = SPAB(features, self.deploy, self.dtype, name=f"block_{SPAB_COUNT}")(out)
    out_b6 = conv3xc("conv_2")(out_b6)
    out = jnp.concatenate([out_feature, out_b6, out_b1, out_b6_c1], axis=-1)
    out = _conv(features, 1, 4 * features, "conv_cat", self.dtype)(out)
    return _Upsampler(self.num_out_ch, self.upscale, self.dtype, name="upsampler")(out)


# ------------------------------------------------------------------------------------------------
# Folding the branch form into the deploy form.


def fold_conv3xc(branches: dict) -> dict:
  """{"conv": {"0", "1", "2"}, "sk"} of one Conv3XC -> its eval_conv's {"kernel", "bias"}.

  conv.0 and conv.2 are 1x1, so the three convs compose into one 3x3 kernel
  K[h, w] = W0 @ W1[h, w] @ W2, and the biases pass forward through the later kernels; the skip
  adds to K's centre tap.
  """
  hi = jax.lax.Precision.HIGHEST
  conv, skip = branches["conv"], branches["sk"]
  widen, middle, narrow = conv["0"]["kernel"][0, 0], conv["1"]["kernel"], conv["2"]["kernel"][0, 0]
  kernel = jnp.einsum("im,hwmn,no->hwio", widen, middle, narrow, precision=hi)
  kernel = kernel.at[1, 1].add(skip["kernel"][0, 0])
  middle_bias = jnp.einsum("hwmn,m->n", middle, conv["0"]["bias"], precision=hi) + conv["1"]["bias"]
  bias = (jnp.einsum("n,no->o", middle_bias, narrow, precision=hi) + conv["2"]["bias"]
          + skip["bias"])
  return {"kernel": kernel, "bias": bias}


def fold(params: Any) -> Any:
  """Branch-form SPAN params (any subtree, with or without the "params" level) -> deploy form.

  Every Conv3XC ({"conv", "sk"}, plus an eval_conv that is dropped if present) becomes
  {"eval_conv": folded}; everything else is returned as it is. Pure, and jit-able.
  """
  if not isinstance(params, Mapping):
    return params
  if "conv" in params and "sk" in params:
    return {"eval_conv": fold_conv3xc(params)}
  return {name: fold(value) for name, value in params.items()}
