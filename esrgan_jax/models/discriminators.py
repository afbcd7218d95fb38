"""ESRGAN discriminators: BasicSR's VGGStyleDiscriminator and Real-ESRGAN's UNetDiscriminatorSN.

Both return raw logits C(x); the relativistic average comparison lives in `training/losses.py`. Non-trainable
state (BatchNorm running statistics, spectral-norm power-iteration vectors) lives in the
`batch_stats` collection, which the train step marks mutable.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from esrgan_jax.models.initializers import (torch_default_bias, torch_default_init,
                                            torch_default_kernel)

LEAKY_SLOPE = 0.2
VGG_INPUT_SIZES = (128, 256)
# PyTorch's convention: the running averages move 10% of the way to each new batch's statistics.
BATCH_NORM_MOMENTUM = 0.1
BATCH_NORM_EPSILON = 1e-5
SPECTRAL_NORM_EPSILON = 1e-12


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


class BatchNorm(nn.Module):
  """torch.nn.BatchNorm2d over the channel (last) axis, statistics included.

  Training normalises with the biased batch variance but folds the *unbiased* one (n / (n - 1))
  into the running variance, as PyTorch does; flax's nn.BatchNorm keeps the biased one, which would
  make a converted BasicSR discriminator drift from PyTorch in eval mode. Statistics are computed
  in float32 with the two-pass variance. Variable names are flax's (params scale/bias,
  batch_stats mean/var), so trees look like those of nn.BatchNorm.
  """
  momentum: float = BATCH_NORM_MOMENTUM
  epsilon: float = BATCH_NORM_EPSILON
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    x32 = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axes)
      var = jnp.mean(jnp.square(x32 - mean), axes)
      if not self.is_initializing():
        count = x.size // features
        unbiased_var = var * (count / (count - 1)) if count > 1 else var
        running_mean.value += self.momentum * (mean - running_mean.value)
        running_var.value += self.momentum * (unbiased_var - running_var.value)
    else:
      mean, var = running_mean.value, running_var.value
    y = (x32 - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype)


class VGGStyleDiscriminator(nn.Module):
  """VGG-style classifier for 128x128 (or 256x256) HR patches, BasicSR's layer layout.

  Stage k has a 3x3 stride-1 conv then a 4x4 stride-2 conv, each followed by BatchNorm (except the
  very first conv) and LeakyReLU(0.2); then linear(100) and linear(1).
  """
  num_in_ch: int = 3
  num_feat: int = 64
  input_size: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.input_size not in VGG_INPUT_SIZES:
      raise ValueError(f"VGGStyleDiscriminator.input_size must be one of {VGG_INPUT_SIZES}, "
                       f"got {self.input_size}")
    if x.shape[1:] != (self.input_size, self.input_size, self.num_in_ch):
      raise ValueError(f"VGGStyleDiscriminator expects NHWC input of size {self.input_size}x"
                       f"{self.input_size}x{self.num_in_ch}, got shape {x.shape}")
    num_stages = 5 if self.input_size == 128 else 6
    widths = [self.num_feat * m for m in (1, 2, 4, 8, 8, 8)][:num_stages]
    x = x.astype(self.dtype)
    for stage, width in enumerate(widths):
      for conv_index, (kernel, stride) in enumerate(((3, 1), (4, 2))):
        name = f"{stage}_{conv_index}"
        first = stage == 0 and conv_index == 0
        x = nn.Conv(width, (kernel, kernel), strides=(stride, stride),
                    padding=((1, 1), (1, 1)), use_bias=first, dtype=self.dtype,
                    param_dtype=jnp.float32, name=f"conv{name}",
                    **torch_default_init(kernel * kernel * x.shape[-1]))(x)
        if not first:
          x = BatchNorm(dtype=self.dtype, name=f"bn{name}")(x, train)
        x = leaky_relu(x)
    x = x.reshape(x.shape[0], -1)
    x = leaky_relu(nn.Dense(100, dtype=self.dtype, param_dtype=jnp.float32, name="linear1",
                            **torch_default_init(x.shape[-1]))(x))
    x = nn.Dense(1, dtype=self.dtype, param_dtype=jnp.float32, name="linear2",
                 **torch_default_init(x.shape[-1]))(x)
    return x.astype(jnp.float32)


def _l2_normalize(v):
  return v / jnp.maximum(jnp.linalg.norm(v), SPECTRAL_NORM_EPSILON)


class SpectralNormConv(nn.Module):
  """Conv whose kernel is divided by its largest singular value, as torch's `spectral_norm`.

  Training runs one power-iteration step from the stored (u, v) and stores the result; evaluation
  uses the stored vectors unchanged, exactly as PyTorch does. The kernel is viewed as a matrix of
  shape (out, kh * kw * in); v is stored in that (kh, kw, in) flattening order.
  """
  features: int
  kernel_size: int
  stride: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    k, in_ch = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", torch_default_kernel, (k, k, in_ch, self.features), jnp.float32)
    matrix = kernel.reshape(-1, self.features).T
    u = self.variable("batch_stats", "u",
                      lambda: _l2_normalize(jax.random.normal(self.make_rng("params"),
                                                              (self.features,))))
    v = self.variable("batch_stats", "v",
                      lambda: _l2_normalize(jax.random.normal(self.make_rng("params"),
                                                              (matrix.shape[1],))))
    u_vec, v_vec = u.value, v.value
    if train:
      v_vec = _l2_normalize(matrix.T @ u_vec)
      u_vec = _l2_normalize(matrix @ v_vec)
      if not self.is_initializing():
        u.value, v.value = u_vec, v_vec
    u_vec, v_vec = jax.lax.stop_gradient(u_vec), jax.lax.stop_gradient(v_vec)
    sigma = u_vec @ (matrix @ v_vec)
    pad = (k - 1) // 2 if self.stride == 1 else 1
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), (kernel / sigma).astype(self.dtype), (self.stride, self.stride),
        ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", torch_default_bias(k * k * in_ch), (self.features,), jnp.float32)
    return y


def upsample_bilinear_x2(x):
  """x2 bilinear resize with half-pixel centres (PyTorch's align_corners=False)."""
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear", antialias=False)


class UNetDiscriminatorSN(nn.Module):
  """Real-ESRGAN's U-Net discriminator with spectral norm; returns a per-pixel logit map."""
  num_in_ch: int = 3
  num_feat: int = 64
  skip_connection: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.ndim != 4 or x.shape[-1] != self.num_in_ch or x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f"UNetDiscriminatorSN expects NHWC input with {self.num_in_ch} channels "
                       f"and sides divisible by 8, got shape {x.shape}")
    nf = self.num_feat
    x = x.astype(self.dtype)

    def sn_conv(features, kernel, stride, name):
      return SpectralNormConv(features, kernel, stride, dtype=self.dtype, name=name)

    x0 = leaky_relu(nn.Conv(nf, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                            param_dtype=jnp.float32, name="conv0",
                            **torch_default_init(9 * x.shape[-1]))(x))
    x1 = leaky_relu(sn_conv(nf * 2, 4, 2, "conv1")(x0, train))
    x2 = leaky_relu(sn_conv(nf * 4, 4, 2, "conv2")(x1, train))
    x3 = leaky_relu(sn_conv(nf * 8, 4, 2, "conv3")(x2, train))
    x4 = leaky_relu(sn_conv(nf * 4, 3, 1, "conv4")(upsample_bilinear_x2(x3), train))
    if self.skip_connection:
      x4 = x4 + x2
    x5 = leaky_relu(sn_conv(nf * 2, 3, 1, "conv5")(upsample_bilinear_x2(x4), train))
    if self.skip_connection:
      x5 = x5 + x1
    x6 = leaky_relu(sn_conv(nf, 3, 1, "conv6")(upsample_bilinear_x2(x5), train))
    if self.skip_connection:
      x6 = x6 + x0
    out = leaky_relu(sn_conv(nf, 3, 1, "conv7")(x6, train))
    out = leaky_relu(sn_conv(nf, 3, 1, "conv8")(out, train))
    out = nn.Conv(1, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32,
                  name="conv9", **torch_default_init(9 * out.shape[-1]))(out)
    return out.astype(jnp.float32)
