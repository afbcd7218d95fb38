"""PyTorch SPAN as spandrel 0.4.2 runs it, the reference for esrgan_jax/models/span.py.

Written from the SPAN paper and the public layer layout of the official code and spandrel's copy,
so that `state_dict()` has spandrel's keys: conv_1.{sk, conv.0, conv.1, conv.2, eval_conv},
block_N.c{1,2,3}_r.(same), conv_cat, conv_2.(same), upsampler.0, and the `no_norm` buffer when
the input is not normalised. As in spandrel: in train mode a Conv3XC runs its branches; in eval
mode it first recomputes eval_conv from them (so a stored eval_conv never matters) and runs that.
A fresh eval_conv keeps torch's default init (spandrel builds modules in train mode).

NCHW, as PyTorch is. Imported by tests and benchmarks only, never by esrgan_jax.
"""

import torch
from torch import nn
from torch.nn import functional as F

SPAB_COUNT = 6
GAIN = 2


class Conv3XC(nn.Module):
  """Training form: 1x1 -> 3x3 valid -> 1x1 on the zero-padded input, plus a 1x1 skip."""

  def __init__(self, c_in, c_out):
    super().__init__()
    self.sk = nn.Conv2d(c_in, c_out, 1)
    self.conv = nn.Sequential(
        nn.Conv2d(c_in, GAIN * c_in, 1),
        nn.Conv2d(GAIN * c_in, GAIN * c_out, 3),
        nn.Conv2d(GAIN * c_out, c_out, 1),
    )
    self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)

  @torch.no_grad()
  def update_params(self):
    """Writes the branches, folded into one 3x3 conv, into eval_conv."""
    widen, middle, narrow = (layer.weight for layer in self.conv)
    # (out, in, kh, kw) layouts: compose the channel maps of the three convs per tap.
    weight = torch.einsum("om,mnhw,ni->oihw", narrow[:, :, 0, 0], middle, widen[:, :, 0, 0])
    weight[:, :, 1, 1] += self.sk.weight[:, :, 0, 0]
    middle_bias = middle.sum((2, 3)) @ self.conv[0].bias + self.conv[1].bias
    bias = narrow[:, :, 0, 0] @ middle_bias + self.conv[2].bias + self.sk.bias
    self.eval_conv.weight.copy_(weight)
    self.eval_conv.bias.copy_(bias)

  def forward(self, x):
    if self.training:
      return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
    self.update_params()
    return self.eval_conv(x)


class SPAB(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.c1_r = Conv3XC(channels, channels)
    self.c2_r = Conv3XC(channels, channels)
    self.c3_r = Conv3XC(channels, channels)

  def forward(self, x):
    # The official code's SiLU is in place, so the c1_r output it returns is the activated one.
    out1 = F.silu(self.c1_r(x))
    out3 = self.c3_r(F.silu(self.c2_r(out1)))
    attention = torch.sigmoid(out3) - 0.5
    return (out3 + x) * attention, out1


class SPAN(nn.Module):

  def __init__(self, num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4, norm=True,
               img_range=255.0, rgb_mean=(0.4488, 0.4371, 0.4040)):
    super().__init__()
    self.img_range = img_range
    self.mean = torch.tensor(rgb_mean).view(1, -1, 1, 1)
    if not norm:
      self.register_buffer("no_norm", torch.zeros(1))
    self.norm = norm
    self.conv_1 = Conv3XC(num_in_ch, feature_channels)
    for i in range(1, SPAB_COUNT + 1):
      setattr(self, f"block_{i}", SPAB(feature_channels))
    self.conv_cat = nn.Conv2d(4 * feature_channels, feature_channels, 1)
    self.conv_2 = Conv3XC(feature_channels, feature_channels)
    self.upsampler = nn.Sequential(
        nn.Conv2d(feature_channels, num_out_ch * upscale**2, 3, padding=1),
        nn.PixelShuffle(upscale),
    )

  def forward(self, x):
    if self.norm:
      x = (x - self.mean.to(x)) * self.img_range
    out_feature = self.conv_1(x)
    out_b1, _ = self.block_1(out_feature)
    out = out_b1
    for i in range(2, SPAB_COUNT):
      out, _ = getattr(self, f"block_{i}")(out)
    out_b6, out_b6_c1 = getattr(self, f"block_{SPAB_COUNT}")(out)
    out = self.conv_cat(torch.cat([out_feature, self.conv_2(out_b6), out_b1, out_b6_c1], 1))
    return self.upsampler(out)
