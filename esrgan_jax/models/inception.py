"""The InceptionV3 of FID: TensorFlow's 2015 Inception graph as pytorch-fid lays it out, in NHWC.

FID, KID and IS are only comparable across papers when computed with this exact network (the
`pt_inception-2015-12-05` weights), which differs from torchvision's InceptionV3 in four places:
the average pools of the A, C and first E blocks exclude the padding from their count, the last
E block pools its branch with a max instead of an average, BatchNorm uses eps 1e-3, and the
classifier has 1008 outputs (the 2015 graph's label set). The input, RGB in [0, 1], is resized to
299x299 bilinearly with half-pixel centres and no antialiasing (torch's F.interpolate with
align_corners=False, as pytorch-fid does) and mapped to [-1, 1].

Submodule names are the PyTorch ones (`Mixed_5b/branch5x5_1/conv`, `.../bn`, `fc`), so the weight
import is a rename plus transposes; BatchNorm running statistics live in `batch_stats` and are
always used (this network is never trained here).
"""

import functools
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008
BATCH_NORM_EPSILON = 1e-3


@functools.cache
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) weights of 1-D linear resampling as torch's align_corners=False does it:
  source = (i + 0.5) * in / out - 0.5, clamped at 0, never antialiased."""
  # In float32 as torch computes it on float images, so the weights agree to the last bit.
  scale = np.float32(in_size) / np.float32(out_size)
  source = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  source = np.maximum(source, np.float32(0.0))
  low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = (source - low.astype(np.float32)).astype(np.float64)
  weights = np.zeros((out_size, in_size), np.float64)
  np.add.at(weights, (np.arange(out_size), low), 1.0 - frac)
  np.add.at(weights, (np.arange(out_size), high), frac)
  return weights.astype(np.float32)


def resize_bilinear(images, size: int = INPUT_SIZE):
  """NHWC images resized to size x size, separably, as two small matrix products."""
  height, width = images.shape[1], images.shape[2]
  if (height, width) == (size, size):
    return images
  rows = jnp.asarray(bilinear_matrix(height, size))
  cols = jnp.asarray(bilinear_matrix(width, size))
  images = jnp.einsum("oh,nhwc->nowc", rows, images, precision="highest")
  return jnp.einsum("ow,nhwc->nhoc", cols, images, precision="highest")


def _pairs(value) -> tuple[int, int]:
  return tuple(value) if isinstance(value, Sequence) else (value, value)


class BasicConv(nn.Module):
  """Conv without bias, BatchNorm (running statistics) and ReLU: torchvision's BasicConv2d."""
  features: int
  kernel: int | tuple[int, int]
  stride: int = 1
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x):
    pad_h, pad_w = _pairs(self.padding)
    x = nn.Conv(self.features, _pairs(self.kernel), strides=_pairs(self.stride),
                padding=((pad_h, pad_h), (pad_w, pad_w)), use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BATCH_NORM_EPSILON, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  # count_include_pad=False: the border averages see only real pixels (the TF graph's SAME pool).
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride_2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """Mixed_5b/c/d (pytorch-fid's FIDInceptionA)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv(64, 1, name="branch1x1")(x)
    branch5x5 = BasicConv(48, 1, name="branch5x5_1")(x)
    branch5x5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(branch5x5)
    branch3x3dbl = BasicConv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = BasicConv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: the grid reduction from 35x35 to 17x17."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv(384, 3, stride=2, name="branch3x3")(x)
    branch3x3dbl = BasicConv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, 3, stride=2, name="branch3x3dbl_3")(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b/c/d/e (pytorch-fid's FIDInceptionC): factorised 7x7 convolutions."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    branch1x1 = BasicConv(192, 1, name="branch1x1")(x)
    branch7x7 = BasicConv(c7, 1, name="branch7x7_1")(x)
    branch7x7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
    dbl = BasicConv(c7, 1, name="branch7x7dbl_1")(x)
    dbl = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(dbl)
    dbl = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(dbl)
    dbl = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(dbl)
    dbl = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(dbl)
    branch_pool = BasicConv(192, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: the grid reduction from 17x17 to 8x8."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv(192, 1, name="branch3x3_1")(x)
    branch3x3 = BasicConv(320, 3, stride=2, name="branch3x3_2")(branch3x3)
    branch7x7x3 = BasicConv(192, 1, name="branch7x7x3_1")(x)
    branch7x7x3 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = BasicConv(192, 3, stride=2, name="branch7x7x3_4")(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (average pool, FIDInceptionE_1) and Mixed_7c (max pool, FIDInceptionE_2)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv(320, 1, name="branch1x1")(x)
    branch3x3 = BasicConv(384, 1, name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
        BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
    ], axis=-1)
    dbl = BasicConv(448, 1, name="branch3x3dbl_1")(x)
    dbl = BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(dbl)
    dbl = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(dbl),
        BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(dbl),
    ], axis=-1)
    if self.max_pool:
      # The 2015 graph's last block max-pools here; torchvision's InceptionV3 averages.
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    branch_pool = BasicConv(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], axis=-1)


class InceptionV3FID(nn.Module):
  """RGB NHWC images in [0, 1] (any size) -> (pool features [N, 2048], logits [N, 1008]).

  The features are the global average pool that FID and KID use; the logits are the 1008-way fc
  (with its bias) that IS reads.
  """

  @nn.compact
  def __call__(self, images):
    x = resize_bilinear(jnp.asarray(images, jnp.float32))
    x = 2.0 * x - 1.0
    x = BasicConv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, 3, name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = BasicConv(80, 1, name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, 3, name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_CLASSES, name="fc")(features)
    return features, logits
