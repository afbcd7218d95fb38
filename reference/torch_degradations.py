"""Real-ESRGAN's second-order degradation in PyTorch, as its model's feed_data runs it per batch.

The benchmark's reference: torch ops only, on any device. Batch-level draws with Python's random
(resize scale and mode, noise type, second blur, final order), per-sample tensors for the rest,
filter2D as a grouped conv2d, F.interpolate, BasicSR's noise functions (a per-sample
torch.unique loop for the Poisson level count), and DiffJPEG(differentiable=False) written with
8x8 DCT matrices. Kernels are drawn in torch here, batched on the device, where Real-ESRGAN draws
them per image in numpy in its data-loader workers: the timing then covers the whole pipeline on
both sides. Written from the published algorithms, not copied.
"""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # iso, aniso, gen iso/aniso, plateau iso/aniso
SIZES = torch.arange(7, 22, 2)


def filter2d(img, kernel):
  """Reflect pad by k // 2, one kernel per sample as conv2d groups."""
  k = kernel.size(-1)
  b, c, h, w = img.shape
  img = F.pad(img, (k // 2,) * 4, mode="reflect")
  kernel = kernel.view(b, 1, k, k).repeat(1, c, 1, 1).view(b * c, 1, k, k)
  out = F.conv2d(img.reshape(1, b * c, h + k - 1, w + k - 1), kernel, groups=b * c)
  return out.view(b, c, h, w)


def usm_sharp(img, weight=0.5, radius=51, threshold=10):
  sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8
  x = torch.arange(radius, device=img.device, dtype=torch.float32) - (radius - 1) / 2
  g = torch.exp(-x**2 / (2 * sigma**2))
  g = g / g.sum()
  kernel = (g[:, None] * g[None]).expand(img.shape[0], -1, -1)
  residual = img - filter2d(img, kernel)
  mask = (residual.abs() * 255 > threshold).float()
  soft = filter2d(mask, kernel)
  return soft * torch.clamp(img + weight * residual, 0, 1) + (1 - soft) * img


def _grid(device):
  ax = torch.arange(21, device=device, dtype=torch.float32) - 10
  yy, xx = torch.meshgrid(ax, ax, indexing="ij")
  return xx, yy


def random_kernels(n, sigma_range, device, sinc_prob=0.1):
  """n kernels of Real-ESRGAN's mix, zero-padded to 21x21, drawn and built as batched tensors."""
  u = lambda lo, hi: torch.empty(n, device=device).uniform_(lo, hi)
  size = SIZES.to(device)[torch.randint(0, 8, (n,), device=device)].float()
  kind = torch.multinomial(torch.tensor(KERNEL_PROB, device=device), n, replacement=True)
  sx, sy, theta = u(*sigma_range), u(*sigma_range), u(-math.pi, math.pi)
  iso = kind % 2 == 0
  sy, theta = torch.where(iso, sx, sy), torch.where(iso, torch.zeros_like(theta), theta)
  below = torch.rand(n, device=device) < 0.5
  beta_g = torch.where(below, u(0.5, 1.0), u(1.0, 4.0))
  beta_p = torch.where(below, torch.ones(n, device=device), u(1.0, 2.0))
  beta = torch.where(kind >= 4, beta_p, torch.where(kind >= 2, beta_g, torch.ones_like(beta_g)))
  xx, yy = _grid(device)
  c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
  a, d = 1 / sx[:, None, None]**2, 1 / sy[:, None, None]**2
  q = ((c * c * a + s * s * d) * xx**2 + 2 * c * s * (a - d) * xx * yy +
       (s * s * a + c * c * d) * yy**2)
  qb = q.clamp_min(1e-30) ** beta[:, None, None] * (q > 0)
  kernels = torch.where((kind >= 4)[:, None, None], 1 / (qb + 1), torch.exp(-0.5 * qb))
  cutoff = torch.where(size < 13, u(math.pi / 3, math.pi), u(math.pi / 5, math.pi))
  sinc = sinc_kernels(cutoff, device)
  kernels = torch.where((torch.rand(n, device=device) < sinc_prob)[:, None, None], sinc, kernels)
  return _mask_normalise(kernels, size)


def sinc_kernels(cutoff, device):
  xx, yy = _grid(device)
  r = torch.sqrt(xx**2 + yy**2)
  safe = torch.where(r == 0, torch.ones_like(r), r)
  w = cutoff[:, None, None]
  k = w * torch.special.bessel_j1(w * safe) / (2 * math.pi * safe)
  return torch.where(r == 0, w**2 / (4 * math.pi), k)


def _mask_normalise(kernels, size):
  xx, yy = _grid(kernels.device)
  half = ((size - 1) / 2)[:, None, None]
  kernels = kernels * ((xx.abs() <= half) & (yy.abs() <= half))
  return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def final_sinc(n, device, prob=0.8):
  size = SIZES.to(device)[torch.randint(0, 8, (n,), device=device)].float()
  sinc = _mask_normalise(sinc_kernels(torch.empty(n, device=device).uniform_(math.pi / 3, math.pi),
                                      device), size)
  pulse = torch.zeros(21, 21, device=device)
  pulse[10, 10] = 1
  return torch.where((torch.rand(n, device=device) < prob)[:, None, None], sinc, pulse)


def gaussian_noise(img, sigma_range, gray_prob):
  b = img.shape[0]
  sigma = torch.empty(b, device=img.device).uniform_(*sigma_range).view(b, 1, 1, 1) / 255
  gray = (torch.rand(b, device=img.device) < gray_prob).float().view(b, 1, 1, 1)
  colour = torch.randn_like(img) * sigma
  gray_field = torch.randn_like(img[:, :1]) * sigma
  return img + colour * (1 - gray) + gray_field * gray


def poisson_noise(img, scale_range, gray_prob):
  """BasicSR's generate_poisson_noise_pt: levels counted per sample with torch.unique."""
  b = img.shape[0]
  scale = torch.empty(b, device=img.device).uniform_(*scale_range).view(b, 1, 1, 1)
  gray = (torch.rand(b, device=img.device) < gray_prob).float().view(b, 1, 1, 1)

  def field(x):
    x = torch.clamp((x * 255).round(), 0, 255) / 255
    levels = [len(torch.unique(x[i])) for i in range(b)]
    vals = torch.tensor([2**math.ceil(math.log2(v)) for v in levels], device=img.device)
    vals = vals.view(b, 1, 1, 1).float()
    return torch.poisson(x * vals) / vals - x
  luma = (0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
  return img + (field(img) * (1 - gray) + field(luma) * gray) * scale


def add_noise(img, gaussian_prob, sigma_range, scale_range, gray_prob=0.4):
  if random.random() < gaussian_prob:
    out = gaussian_noise(img, sigma_range, gray_prob)
  else:
    out = poisson_noise(img, scale_range, gray_prob)
  return torch.clamp(out, 0, 1)


def _dct_matrix(device):
  u, x = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
  alpha = np.where(u == 0, 1 / np.sqrt(2), 1.0)
  return torch.tensor(0.5 * alpha * np.cos((2 * x + 1) * u * np.pi / 16), dtype=torch.float32,
                      device=device)


_LUMA = [[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
         [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
         [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
         [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]]


def _code(plane, table, factor, dct2):
  """One channel through DCT, quantisation and inverse DCT; dct2 (64, 64) is DiffJPEG's 4-D
  cosine tensor with its scale, applied like its tensordot over a block's 64 pixels."""
  n, h, w = plane.shape
  blocks = (plane - 128).view(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(n, -1, 64)
  divisor = table.reshape(64) * factor.view(n, 1, 1)
  restored = torch.round(blocks @ dct2.T / divisor) * divisor @ dct2
  return restored.view(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w) + 128


def diff_jpeg(img, quality):
  """DiffJPEG(differentiable=False): YCbCr, 4:2:0 by 2x2 means, 8x8 DCT, quality-scaled tables
  (BasicSR's transposed luma listing), pad to 16 and crop back."""
  n, _, h, w = img.shape
  device = img.device
  dct = _dct_matrix(device)
  dct2 = torch.kron(dct, dct)  # [(u, v), (x, y)] = D[u, x] D[v, y]
  factor = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality) / 100
  x = F.pad(img, (0, (16 - w % 16) % 16, 0, (16 - h % 16) % 16)) * 255
  r, g, b = x[:, 0], x[:, 1], x[:, 2]
  y = 0.299 * r + 0.587 * g + 0.114 * b
  cb = F.avg_pool2d((-0.168736 * r - 0.331264 * g + 0.5 * b + 128)[:, None], 2)[:, 0]
  cr = F.avg_pool2d((0.5 * r - 0.418688 * g - 0.081312 * b + 128)[:, None], 2)[:, 0]
  luma_table = torch.tensor(_LUMA, dtype=torch.float32, device=device).T
  chroma_table = torch.full((8, 8), 99.0, device=device)
  chroma_table[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99],
                                       [47, 66, 99, 99]], dtype=torch.float32, device=device)
  y = _code(y, luma_table, factor, dct2)
  up = lambda p: p.repeat_interleave(2, 1).repeat_interleave(2, 2)
  cb = up(_code(cb, chroma_table, factor, dct2)) - 128
  cr = up(_code(cr, chroma_table, factor, dct2)) - 128
  rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
  return (torch.clamp(rgb, 0, 255) / 255)[:, :, :h, :w]


def _random_resize(img, prob, up, down, size_of=None):
  kind = random.choices(("up", "down", "keep"), prob)[0]
  s = np.random.uniform(*up) if kind == "up" else np.random.uniform(*down) if kind == "down" else 1
  mode = random.choice(("area", "bilinear", "bicubic"))
  if size_of is None:
    return F.interpolate(img, scale_factor=s, mode=mode)
  return F.interpolate(img, size=size_of(s), mode=mode)


def degrade(gt, scale=4):
  """LR of GT (N, 3, H, W) in [0, 1], Real-ESRGAN x4plus's figures; one call = one batch."""
  n, _, h, w = gt.shape
  device = gt.device
  kernel1 = random_kernels(n, (0.2, 3.0), device)
  kernel2 = random_kernels(n, (0.2, 1.5), device)
  sinc = final_sinc(n, device)
  jpeg_q = lambda: torch.empty(n, device=device).uniform_(30, 95)

  out = filter2d(usm_sharp(gt), kernel1)
  out = _random_resize(out, (0.2, 0.7, 0.1), (1, 1.5), (0.15, 1))
  out = add_noise(out, 0.5, (1, 30), (0.05, 3))
  out = diff_jpeg(torch.clamp(out, 0, 1), jpeg_q())
  if random.random() < 0.8:
    out = filter2d(out, kernel2)
  out = _random_resize(out, (0.3, 0.4, 0.3), (1, 1.2), (0.3, 1),
                       lambda s: (int(h / scale * s), int(w / scale * s)))
  out = add_noise(out, 0.5, (1, 25), (0.05, 2.5))
  mode = random.choice(("area", "bilinear", "bicubic"))
  if random.random() < 0.5:
    out = filter2d(F.interpolate(out, size=(h // scale, w // scale), mode=mode), sinc)
    out = diff_jpeg(torch.clamp(out, 0, 1), jpeg_q())
  else:
    out = diff_jpeg(torch.clamp(out, 0, 1), jpeg_q())
    out = filter2d(F.interpolate(out, size=(h // scale, w // scale), mode=mode), sinc)
  return torch.clamp((out * 255).round(), 0, 255) / 255
