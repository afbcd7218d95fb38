"""PyTorch reference networks that the Flax models and `convert.py` are checked against.

Written from the ESRGAN paper and the public layer layouts of BasicSR / Real-ESRGAN / the original
ESRGAN repository, so that their `state_dict()` keys are the ones real checkpoints carry:
  RRDBNet                  BasicSR / Real-ESRGAN names (conv_first, body.N.rdb1.conv1, conv_body, ...)
  ESRGANRRDBNet            the ESRGAN repository's later names (RRDB_trunk.N.RDB1.conv1, trunk_conv,
                           upconv1, HRconv, ...)
  ESRGANOriginalRRDBNet    the flattened Sequential of the released RRDB_ESRGAN_x4.pth
                           (model.0, model.1.sub.N.RDB1.conv1.0, model.1.sub.{num_block}, model.3, ...)
  VGGStyleDiscriminator    BasicSR's, for 128x128 or 256x256 patches
  UNetDiscriminatorSN      Real-ESRGAN's, with torch.nn.utils.spectral_norm
  vgg19_features()         torchvision's `vgg19().features` Sequential, so keys are `N.weight`
  VGG19FeatureExtractor    pre-ReLU features at named layers, with ImageNet input normalisation

All modules are NCHW, as PyTorch is; the helpers at the end move NHWC numpy arrays in and out.
This module is imported by tests and benchmarks only, never by esrgan_jax.
"""

import collections
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (block, number of convs, width) of VGG19's configuration "E".
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def lrelu(x):
  return F.leaky_relu(x, LEAKY_SLOPE)


def conv3x3(in_ch, out_ch, bias=True):
  return nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=bias)


# ------------------------------------------------------------------------------------------------
# Generators.


class ResidualDenseBlock(nn.Module):
  """Five densely connected convs, output scaled by 0.2 and added to the input."""

  def __init__(self, num_feat=64, num_grow_ch=32):
    super().__init__()
    self.conv1 = conv3x3(num_feat, num_grow_ch)
    self.conv2 = conv3x3(num_feat + num_grow_ch, num_grow_ch)
    self.conv3 = conv3x3(num_feat + 2 * num_grow_ch, num_grow_ch)
    self.conv4 = conv3x3(num_feat + 3 * num_grow_ch, num_grow_ch)
    self.conv5 = conv3x3(num_feat + 4 * num_grow_ch, num_feat)

  def forward(self, x):
    x1 = lrelu(self.conv1(x))
    x2 = lrelu(self.conv2(torch.cat((x, x1), 1)))
    x3 = lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
    x4 = lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
    x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
    return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):

  def __init__(self, num_feat=64, num_grow_ch=32):
    super().__init__()
    self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

  def forward(self, x):
    return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
  """BasicSR's RRDBNet; x2 and x1 fold pixels into channels first (Real-ESRGAN's x2plus)."""

  def __init__(self, num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23,
               num_grow_ch=32):
    super().__init__()
    if scale not in (1, 2, 4):
      raise ValueError(f"scale must be 1, 2 or 4, got {scale}")
    self.scale = scale
    self.conv_first = conv3x3(num_in_ch * (4 // scale) ** 2, num_feat)
    self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
    self.conv_body = conv3x3(num_feat, num_feat)
    self.conv_up1 = conv3x3(num_feat, num_feat)
    self.conv_up2 = conv3x3(num_feat, num_feat)
    self.conv_hr = conv3x3(num_feat, num_feat)
    self.conv_last = conv3x3(num_feat, num_out_ch)

  def forward(self, x):
    if self.scale < 4:
      x = F.pixel_unshuffle(x, 4 // self.scale)
    feat = self.conv_first(x)
    feat = feat + self.conv_body(self.body(feat))
    feat = lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
    return self.conv_last(lrelu(self.conv_hr(feat)))


class _ESRGANDenseBlock(nn.Module):
  """The ESRGAN repository's ResidualDenseBlock_5C (x4 only, attribute names conv1..conv5)."""

  def __init__(self, nf, gc):
    super().__init__()
    self.conv1 = conv3x3(nf, gc)
    self.conv2 = conv3x3(nf + gc, gc)
    self.conv3 = conv3x3(nf + 2 * gc, gc)
    self.conv4 = conv3x3(nf + 3 * gc, gc)
    self.conv5 = conv3x3(nf + 4 * gc, nf)

  def forward(self, x):
    x1 = lrelu(self.conv1(x))
    x2 = lrelu(self.conv2(torch.cat((x, x1), 1)))
    x3 = lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
    x4 = lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
    return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * RESIDUAL_SCALE + x


class _ESRGANRRDB(nn.Module):

  def __init__(self, nf, gc):
    super().__init__()
    self.RDB1 = _ESRGANDenseBlock(nf, gc)
    self.RDB2 = _ESRGANDenseBlock(nf, gc)
    self.RDB3 = _ESRGANDenseBlock(nf, gc)

  def forward(self, x):
    return self.RDB3(self.RDB2(self.RDB1(x))) * RESIDUAL_SCALE + x


class ESRGANRRDBNet(nn.Module):
  """The ESRGAN repository's RRDBNet_arch.RRDBNet (x4): conv_first, RRDB_trunk, trunk_conv, ..."""

  def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32):
    super().__init__()
    self.conv_first = conv3x3(in_nc, nf)
    self.RRDB_trunk = nn.Sequential(*[_ESRGANRRDB(nf, gc) for _ in range(nb)])
    self.trunk_conv = conv3x3(nf, nf)
    self.upconv1 = conv3x3(nf, nf)
    self.upconv2 = conv3x3(nf, nf)
    self.HRconv = conv3x3(nf, nf)
    self.conv_last = conv3x3(nf, out_nc)

  def forward(self, x):
    fea = self.conv_first(x)
    fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
    fea = lrelu(self.upconv1(F.interpolate(fea, scale_factor=2, mode="nearest")))
    fea = lrelu(self.upconv2(F.interpolate(fea, scale_factor=2, mode="nearest")))
    return self.conv_last(lrelu(self.HRconv(fea)))


def _conv_block(in_ch, out_ch, act):
  """The original code's conv_block: a Sequential (conv[, LeakyReLU]), hence `.0.weight` keys."""
  layers = [conv3x3(in_ch, out_ch)]
  if act:
    layers.append(nn.LeakyReLU(LEAKY_SLOPE))
  return nn.Sequential(*layers)


class _OriginalDenseBlock(nn.Module):

  def __init__(self, nf, gc):
    super().__init__()
    self.conv1 = _conv_block(nf, gc, act=True)
    self.conv2 = _conv_block(nf + gc, gc, act=True)
    self.conv3 = _conv_block(nf + 2 * gc, gc, act=True)
    self.conv4 = _conv_block(nf + 3 * gc, gc, act=True)
    self.conv5 = _conv_block(nf + 4 * gc, nf, act=False)

  def forward(self, x):
    x1 = self.conv1(x)
    x2 = self.conv2(torch.cat((x, x1), 1))
    x3 = self.conv3(torch.cat((x, x1, x2), 1))
    x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
    return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * RESIDUAL_SCALE + x


class _OriginalRRDB(_ESRGANRRDB):

  def __init__(self, nf, gc):
    nn.Module.__init__(self)
    self.RDB1 = _OriginalDenseBlock(nf, gc)
    self.RDB2 = _OriginalDenseBlock(nf, gc)
    self.RDB3 = _OriginalDenseBlock(nf, gc)


class _ShortcutBlock(nn.Module):

  def __init__(self, sub):
    super().__init__()
    self.sub = sub

  def forward(self, x):
    return x + self.sub(x)


class ESRGANOriginalRRDBNet(nn.Module):
  """The released RRDB_ESRGAN_x4.pth network: one flat Sequential named `model`.

  model.0 first conv, model.1 shortcut around (RRDBs, trunk conv), model.2/5 nearest x2,
  model.3/6 upsampling convs (+ LeakyReLU at 4/7), model.8 HR conv (+ LeakyReLU at 9), model.10 last.
  """

  def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32):
    super().__init__()
    trunk = [_OriginalRRDB(nf, gc) for _ in range(nb)] + [conv3x3(nf, nf)]
    self.model = nn.Sequential(
        conv3x3(in_nc, nf),
        _ShortcutBlock(nn.Sequential(*trunk)),
        nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(nf, nf), nn.LeakyReLU(LEAKY_SLOPE),
        nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(nf, nf), nn.LeakyReLU(LEAKY_SLOPE),
        conv3x3(nf, nf), nn.LeakyReLU(LEAKY_SLOPE),
        conv3x3(nf, out_nc))

  def forward(self, x):
    return self.model(x)


# ------------------------------------------------------------------------------------------------
# Discriminators.


class VGGStyleDiscriminator(nn.Module):
  """BasicSR's VGG-style discriminator: (3x3 s1, 4x4 s2) conv pairs, BatchNorm, two linears."""

  def __init__(self, num_in_ch=3, num_feat=64, input_size=128):
    super().__init__()
    if input_size not in (128, 256):
      raise ValueError(f"input_size must be 128 or 256, got {input_size}")
    self.num_stages = 5 if input_size == 128 else 6
    widths = [num_feat * m for m in (1, 2, 4, 8, 8, 8)][:self.num_stages]
    in_ch = num_in_ch
    for stage, width in enumerate(widths):
      # Only the very first conv has a bias and no BatchNorm after it.
      setattr(self, f"conv{stage}_0", nn.Conv2d(in_ch, width, 3, 1, 1, bias=stage == 0))
      if stage > 0:
        setattr(self, f"bn{stage}_0", nn.BatchNorm2d(width, affine=True))
      setattr(self, f"conv{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
      setattr(self, f"bn{stage}_1", nn.BatchNorm2d(width, affine=True))
      in_ch = width
    self.linear1 = nn.Linear(num_feat * 8 * 4 * 4, 100)
    self.linear2 = nn.Linear(100, 1)

  def forward(self, x):
    for stage in range(self.num_stages):
      x = getattr(self, f"conv{stage}_0")(x)
      if stage > 0:
        x = getattr(self, f"bn{stage}_0")(x)
      x = lrelu(x)
      x = lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(x)))
    x = x.flatten(1)  # (C, H, W) order
    return self.linear2(lrelu(self.linear1(x)))


class UNetDiscriminatorSN(nn.Module):
  """Real-ESRGAN's U-Net discriminator; convs 1-8 are wrapped in spectral_norm."""

  def __init__(self, num_in_ch=3, num_feat=64, skip_connection=True):
    super().__init__()
    sn = nn.utils.spectral_norm
    nf = num_feat
    self.skip_connection = skip_connection
    self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
    self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
    self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
    self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
    self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
    self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
    self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
    self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
    self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
    self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

  def forward(self, x):
    def up(t):
      return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

    x0 = lrelu(self.conv0(x))
    x1 = lrelu(self.conv1(x0))
    x2 = lrelu(self.conv2(x1))
    x3 = lrelu(self.conv3(x2))
    x4 = lrelu(self.conv4(up(x3)))
    if self.skip_connection:
      x4 = x4 + x2
    x5 = lrelu(self.conv5(up(x4)))
    if self.skip_connection:
      x5 = x5 + x1
    x6 = lrelu(self.conv6(up(x5)))
    if self.skip_connection:
      x6 = x6 + x0
    out = lrelu(self.conv7(x6))
    out = lrelu(self.conv8(out))
    return self.conv9(out)


# ------------------------------------------------------------------------------------------------
# VGG19 (the perceptual-loss network).


def vgg19_layer_names():
  """torchvision `features` layer names in order: conv1_1, relu1_1, ..., pool5."""
  names = []
  for block, num_convs, _ in VGG19_BLOCKS:
    for i in range(1, num_convs + 1):
      names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    names.append(f"pool{block}")
  return names


def vgg19_features():
  """torchvision's `vgg19().features`, built by hand: its state dict keys are `N.weight`/`N.bias`."""
  layers, in_ch = [], 3
  for _, num_convs, width in VGG19_BLOCKS:
    for _ in range(num_convs):
      layers += [nn.Conv2d(in_ch, width, 3, 1, 1), nn.ReLU(inplace=False)]
      in_ch = width
    layers.append(nn.MaxPool2d(2, 2))
  return nn.Sequential(*layers)


def vgg19_state_dict(seed=0):
  """A torchvision-layout VGG19 state dict (`features.N.*` plus `classifier.*`), random weights.

  The classifier is small here (it is never used, only present as in the real file).
  """
  torch.manual_seed(seed)
  features = vgg19_features()
  state = collections.OrderedDict((f"features.{k}", v) for k, v in features.state_dict().items())
  classifier = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(), nn.Linear(4, 2))
  state.update((f"classifier.{k}", v) for k, v in classifier.state_dict().items())
  return state


class VGG19FeatureExtractor(nn.Module):
  """Pre-ReLU VGG19 features at `layers` (BasicSR's VGGFeatureExtractor, VGG19 only)."""

  def __init__(self, layers=("conv5_4",), use_input_norm=True, range_norm=False, features=None):
    super().__init__()
    names = vgg19_layer_names()
    unknown = [n for n in layers if n not in names]
    if unknown:
      raise ValueError(f"unknown VGG19 layer(s) {unknown}")
    self.layers = tuple(layers)
    self.use_input_norm = use_input_norm
    self.range_norm = range_norm
    features = features if features is not None else vgg19_features()
    deepest = max(names.index(n) for n in layers)
    self.names = names[:deepest + 1]
    self.features = features[:deepest + 1]
    self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

  def forward(self, x):
    if self.range_norm:
      x = (x + 1) / 2
    if self.use_input_norm:
      x = (x - self.mean) / self.std
    outputs = {}
    for name, layer in zip(self.names, self.features):
      x = layer(x)
      if name in self.layers:
        outputs[name] = x.clone()
    return outputs


# ------------------------------------------------------------------------------------------------
# Helpers.


def seed_all_parameters(module, seed=0, gain=1.0):
  """Overwrites every parameter with reproducible random values; returns the module.

  BasicSR's initialisation scales residual convs by 0.1 and zeroes biases, which would hide errors
  in those paths. Here weights are N(0, gain^2 / fan_in) (gain sqrt(2) keeps ReLU nets at unit
  scale), biases N(0, 0.1^2) and BatchNorm gammas 1 + N(0, 0.1^2), so every path shows.
  """
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in module.named_parameters():
      noise = torch.randn(param.shape, generator=generator)
      if param.ndim > 1:
        param.copy_(noise * (gain / math.sqrt(math.prod(param.shape[1:]))))
      elif name.endswith("weight"):  # BatchNorm gamma
        param.copy_(1.0 + 0.1 * noise)
      else:
        param.copy_(0.1 * noise)
  return module


def to_nchw(x_nhwc):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2)))


def to_nhwc(x_nchw):
  """NCHW tensor -> NHWC numpy; other ranks (e.g. (N, 1) logits) are returned as they are."""
  x = x_nchw.detach().cpu().numpy()
  return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def numpy_state_dict(module):
  """state_dict() as {key: float32/int numpy array}, the input format of esrgan_jax.convert."""
  return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
