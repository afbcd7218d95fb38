"""PyTorch re-statement of LDL's artifact map and loss (csjliang/LDL, basicsr/losses/LDL_loss.py,
and the artifacts term of its ESRGANArtifactsDisModel / RealESRGANArtifactsDisModel).

Written from the published formulas, in their NCHW form and with their operations (unfold over a
reflect-padded residual, torch.var, masked assignment), so that values and autograd's gradients
are what the published code computes. Imported by tests only, never by esrgan_jax.
"""

import torch
from torch.nn import functional as F


def local_weights(residual, ksize):
  """Unbiased variance of `residual` (N, 1, H, W) in each ksize x ksize window (reflect pad)."""
  pad = (ksize - 1) // 2
  padded = F.pad(residual, [pad, pad, pad, pad], mode="reflect")
  windows = padded.unfold(2, ksize, 1).unfold(3, ksize, 1)  # N, 1, H, W, k, k
  return torch.var(windows, dim=(-1, -2), unbiased=True)


def artifact_map(gt, output, ema_output, ksize=7):
  """The refined artifact map (N, 1, H, W); gradients flow through `output` as published."""
  residual_ema = torch.sum(torch.abs(gt - ema_output), 1, keepdim=True)
  residual_sr = torch.sum(torch.abs(gt - output), 1, keepdim=True)
  patch_weight = torch.var(residual_sr.clone(), dim=(-1, -2, -3), keepdim=True) ** (1 / 5)
  weight = patch_weight * local_weights(residual_sr.clone(), ksize)
  weight[residual_sr < residual_ema] = 0
  return weight


def ldl_loss(gt, output, ema_output, ksize=7, loss_weight=1.0):
  """The generator's artifacts term: loss_weight * L1(map * output, map * gt), mean reduction."""
  weight = artifact_map(gt, output, ema_output, ksize)
  return loss_weight * F.l1_loss(weight * output, weight * gt)
