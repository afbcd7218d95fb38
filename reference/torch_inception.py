"""A PyTorch reference of the FID InceptionV3, written from the architecture of TF's 2015 graph.

The module and attribute names are those of torchvision's Inception3 with pytorch-fid's FID
blocks swapped in, so `state_dict()` has the keys of `pt_inception-2015-12-05-6726825d.pth`
(`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch_pool.bn.running_var`, ..., `fc.bias`). The
forward pass resizes with F.interpolate(bilinear, align_corners=False) and maps [0, 1] to
[-1, 1] as pytorch-fid's wrapper does, then returns (pool features [N, 2048], fc logits [N, 1008]).
Imported by tests only (torchvision does not import beside this torch, hence no reuse of it).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class BasicConv2d(nn.Module):

  def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
    self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):

  def __init__(self, in_ch, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(in_ch, 64, 1)
    self.branch5x5_1 = BasicConv2d(in_ch, 48, 1)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
    self.branch_pool = BasicConv2d(in_ch, pool_features, 1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(_avg_pool(x))
    return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):

  def __init__(self, in_ch):
    super().__init__()
    self.branch3x3 = BasicConv2d(in_ch, 384, 3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):

  def __init__(self, in_ch, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(in_ch, 192, 1)
    self.branch7x7_1 = BasicConv2d(in_ch, c7, 1)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(in_ch, 192, 1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for i in range(1, 6):
      bd = getattr(self, f"branch7x7dbl_{i}")(bd)
    bp = self.branch_pool(_avg_pool(x))
    return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):

  def __init__(self, in_ch):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(in_ch, 192, 1)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(in_ch, 192, 1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = x
    for i in range(1, 5):
      b7 = getattr(self, f"branch7x7x3_{i}")(b7)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
  """FIDInceptionE_1 (max_pool=False) and FIDInceptionE_2 (max_pool=True)."""

  def __init__(self, in_ch, max_pool):
    super().__init__()
    self.max_pool = max_pool
    self.branch1x1 = BasicConv2d(in_ch, 320, 1)
    self.branch3x3_1 = BasicConv2d(in_ch, 384, 1)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, 1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(in_ch, 192, 1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    if self.max_pool:
      pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    else:
      pooled = _avg_pool(x)
    return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
    self.Mixed_5b = FIDInceptionA(192, 32)
    self.Mixed_5c = FIDInceptionA(256, 64)
    self.Mixed_5d = FIDInceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = FIDInceptionC(768, 128)
    self.Mixed_6c = FIDInceptionC(768, 160)
    self.Mixed_6d = FIDInceptionC(768, 160)
    self.Mixed_6e = FIDInceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    self.fc = nn.Linear(2048, 1008)

  def forward(self, images):
    """images: NCHW in [0, 1]."""
    x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
      x = getattr(self, f"Mixed_{name}")(x)
    features = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return features, self.fc(features)


def random_fid_inception(seed: int, calibration_images: np.ndarray) -> FIDInceptionV3:
  """An eval-mode FIDInceptionV3 with random weights whose activations stay of order one.

  He-normal convs and random BatchNorm scales and (positive) shifts; the running statistics are the batch
  statistics of `calibration_images` (NHWC in [0, 1]), so every layer is roughly normalised,
  lightly jittered so that no layer is exactly normalised on those images.
  """
  torch.manual_seed(seed)
  net = FIDInceptionV3()
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
      if isinstance(module, nn.BatchNorm2d):
        # Affine parameters before the statistics, so each layer is normalised with its own. The
        # positive shift keeps most ReLUs open: with zero-centred shifts this random net is
        # chaotic (float32 and float64 torch runs differ by 2e-3), with these by 3e-5.
        module.weight.uniform_(0.7, 1.3)
        module.bias.uniform_(1.0, 1.5)
        module.momentum = None  # cumulative average: one pass sets the statistics to the batch's
    net.fc.weight.normal_(0.0, 2048**-0.5)
    net.fc.bias.normal_(0.0, 0.5)
    net.train()
    net(to_nchw(calibration_images))
    for module in net.modules():
      if isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.running_mean.add_(0.02 * torch.randn(n))
        module.running_var.mul_(torch.empty(n).uniform_(0.95, 1.05))
  return net.eval()


def to_nchw(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2)))


def numpy_state_dict(net: nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
