"""A PyTorch reference of DISTS, re-stated here from the formula of Ding et al. (TPAMI 2020).

It computes what the `dists-pytorch` package (v0.1) computes, written independently of it:
ImageNet normalisation, torchvision's VGG16 `features` with each max-pool replaced by L2 pooling
(sqrt of a stride-2, zero-padded depthwise 3x3 Hann blur of x^2, plus 1e-12 under the root), the
six feature maps [input, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3], and
  D = 1 - sum over maps and channels of (alpha * S1 + beta * S2) / (sum(alpha) + sum(beta)).
`vgg16_features()` is torchvision's `vgg16().features` layout (31 modules, convs at 0, 2, 5, ...),
so a state dict of it, prefixed `features.`, has the keys of torchvision's vgg16 .pth. Imported by
tests only (torchvision does not import beside this torch, hence no reuse of it).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# VGG16's `features`: widths of the 3x3 convs (each followed by a ReLU), "M" for a max-pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")
CHANNELS = (3, 64, 128, 256, 512, 512)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def vgg16_features() -> nn.Sequential:
  """torchvision's vgg16().features, in its order and indices (weights: torch's default init)."""
  layers, width = [], 3
  for spec in VGG16_LAYERS:
    if spec == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(width, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      width = spec
  return nn.Sequential(*layers)


def l2_pool(x: torch.Tensor) -> torch.Tensor:
  """DISTS's replacement for a 2x2 max-pool: a Hann-weighted root mean square, stride 2."""
  hann = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
  window = torch.outer(hann, hann)
  window = (window / window.sum()).expand(x.shape[1], 1, 3, 3)
  return torch.sqrt(F.conv2d(x * x, window, stride=2, padding=1, groups=x.shape[1]) + 1e-12)


class ReferenceDISTS(nn.Module):
  """DISTS on NCHW images in [0, 1], with VGG16 `features` and the (1, 1475, 1, 1) weights."""

  def __init__(self, features: nn.Sequential, alpha: torch.Tensor, beta: torch.Tensor):
    super().__init__()
    self.features = features
    self.register_buffer("alpha", alpha.reshape(-1).float().clone())
    self.register_buffer("beta", beta.reshape(-1).float().clone())
    self.eval()

  def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    maps, h = [x], (x - mean) / std
    for index, layer in enumerate(self.features):
      if isinstance(layer, nn.MaxPool2d):
        if index == len(self.features) - 1:
          break  # VGG16's last pool comes after relu5_3, the last map DISTS reads
        maps.append(h)  # the ReLU before each pool ends a block
        h = l2_pool(h)
      else:
        h = layer(h)
    return maps + [h]

  def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    total = self.alpha.sum() + self.beta.sum()
    alphas = torch.split(self.alpha / total, CHANNELS)
    betas = torch.split(self.beta / total, CHANNELS)
    score = torch.zeros(x.shape[0])
    for fx, fy, a, b in zip(self.feature_maps(x), self.feature_maps(y), alphas, betas):
      mx, my = fx.mean(dim=(2, 3)), fy.mean(dim=(2, 3))
      vx = fx.var(dim=(2, 3), unbiased=False)
      vy = fy.var(dim=(2, 3), unbiased=False)
      cov = (fx * fy).mean(dim=(2, 3)) - mx * my
      structure = (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)
      texture = (2 * cov + 1e-6) / (vx + vy + 1e-6)
      score = score + (structure * a).sum(dim=1) + (texture * b).sum(dim=1)
    return 1 - score
