"""SRVGGNetCompact, Real-ESRGAN's compact real-time generator (realesr-animevideov3, general-x4v3).

A plain stack of 3x3 convs at LR resolution, each followed by an activation; the last conv makes
num_out_ch * upscale^2 channels that a pixel shuffle turns into the HR image, and the
nearest-upsampled input is added, so the network learns only the residual. No convolution runs at
HR resolution and the input is not normalised.

Parameter names follow the PyTorch `body` ModuleList one to one: `body_{i}` is `body.{i}`.
Even i are convs (kernel HWIO <- weight OIHW, bias), odd i activations; only PReLU has a
parameter, `body_{i}/weight` <- `body.{i}.weight`, one slope per channel. The last conv is
`body_{2 * num_conv + 2}`.
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from esrgan_jax.models.initializers import torch_default_init
from esrgan_jax.models.shuffle import pixel_shuffle, upsample_nearest

ACT_TYPES = ("relu", "prelu", "leakyrelu")
LEAKY_SLOPE = 0.1  # srvgg_arch.py's LeakyReLU, not ESRGAN's 0.2
PRELU_INIT = 0.25  # torch.nn.PReLU's default


def receptive_radius(num_conv: int, upscale: int) -> int:
  """LR input pixels on each side that one output pixel may depend on.

  Output pixel Y is pixel-shuffled from LR position Y // upscale of the last conv's output, and the
  nearest-upsampled input adds that same LR pixel. Every 3x3 conv (the first, num_conv in the body
  and the last) widens the reach by one LR pixel, whatever the upscale.
  """
  if num_conv < 0 or upscale < 1:
    raise ValueError(f"receptive_radius: need num_conv >= 0 and upscale >= 1, "
                     f"got {num_conv} and {upscale}")
  return num_conv + 2


class PReLU(nn.Module):
  """torch.nn.PReLU(num_parameters=C) on the last axis; the slopes stay float32."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    slope = self.param("weight", nn.initializers.constant(PRELU_INIT), (x.shape[-1],),
                       jnp.float32)
    # `x > 0` as torch's: at exactly 0 the gradient goes through the slope.
    return jnp.where(x > 0, x, slope.astype(self.dtype) * x)


def _activation(act_type: str, name: str, dtype: Any):
  if act_type == "prelu":
    return PReLU(dtype, name=name)
  if act_type == "relu":
    return nn.relu
  return lambda x: jnp.where(x > 0, x, LEAKY_SLOPE * x)


class SRVGGNetCompact(nn.Module):
  """NHWC in and out, images in [0, 1]; out = shuffle(body(x)) + nearest(x)."""
  num_in_ch: int = 3
  num_out_ch: int = 3
  num_feat: int = 64
  num_conv: int = 16
  upscale: int = 4
  act_type: str = "prelu"
  dtype: Any = jnp.float32

  def _check(self, x):
    if self.act_type not in ACT_TYPES:
      raise ValueError(f"SRVGGNetCompact.act_type must be one of {ACT_TYPES}, "
                       f"got {self.act_type!r}")
    if self.upscale < 1 or self.num_conv < 0:
      raise ValueError(f"SRVGGNetCompact needs upscale >= 1 and num_conv >= 0, "
                       f"got {self.upscale} and {self.num_conv}")
    # The upsampled input is added to the output, as PyTorch's in-place add broadcasts it.
    if self.num_in_ch not in (1, self.num_out_ch):
      raise ValueError(f"SRVGGNetCompact adds its input to its output: num_in_ch must be 1 or "
                       f"num_out_ch ({self.num_out_ch}), got {self.num_in_ch}")
    if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
      raise ValueError(f"SRVGGNetCompact expects NHWC input with {self.num_in_ch} channels, "
                       f"got shape {x.shape}")

  def _conv(self, features, index, in_features):
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                   param_dtype=jnp.float32, name=f"body_{index}",
                   **torch_default_init(9 * in_features))

  @nn.compact
  def __call__(self, x):
    self._check(x)
    x = x.astype(self.dtype)
    out, in_features = x, self.num_in_ch
    for k in range(self.num_conv + 1):
      out = self._conv(self.num_feat, 2 * k, in_features)(out)
      out = _activation(self.act_type, f"body_{2 * k + 1}", self.dtype)(out)
      in_features = self.num_feat
    last = 2 * self.num_conv + 2
    out = self._conv(self.num_out_ch * self.upscale**2, last, self.num_feat)(out)
    return pixel_shuffle(out, self.upscale) + upsample_nearest(x, self.upscale)
