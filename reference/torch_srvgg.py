"""PyTorch re-statement of Real-ESRGAN's SRVGGNetCompact (realesrgan/archs/srvgg_arch.py).

Written from that file's layer layout so that `state_dict()` keys are those of the released
realesr-animevideov3 / realesr-general-x4v3 .pth files: `body.{i}.weight` / `body.{i}.bias` for
the convs at even i, `body.{i}.weight` for a PReLU at odd i (ReLU and LeakyReLU hold nothing).
NCHW, as PyTorch is. Imported by tests and benchmarks only, never by esrgan_jax.
"""

from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.1


def activation(act_type, num_feat):
  if act_type == "prelu":
    return nn.PReLU(num_parameters=num_feat)
  if act_type == "relu":
    return nn.ReLU()
  if act_type == "leakyrelu":
    return nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
  raise ValueError(f"unknown act_type {act_type!r}")


class SRVGGNetCompact(nn.Module):
  """conv + act, num_conv x (conv + act), conv to out * s^2, PixelShuffle(s), + nearest input."""

  def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4,
               act_type="prelu"):
    super().__init__()
    self.upscale = upscale
    layers = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), activation(act_type, num_feat)]
    for _ in range(num_conv):
      layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), activation(act_type, num_feat)]
    layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
    self.body = nn.ModuleList(layers)
    self.upsampler = nn.PixelShuffle(upscale)

  def forward(self, x):
    out = x
    for layer in self.body:
      out = layer(out)
    # srvgg_arch.py adds in place (`out += base`); the sum is the same.
    base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
    return self.upsampler(out) + base
