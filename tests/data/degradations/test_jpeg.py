"""jpeg_compress against DiffJPEG's algorithm (a torch reference written here) and Pillow's JPEG."""

import io
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from esrgan_jax.data.degradations import jpeg

# Annex K's tables as printed (row = vertical frequency), typed in again for the reference.
LUMA_K1 = [[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
           [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
           [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
           [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]]
CHROMA_K2_CORNER = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def cosine_tensors():
  """DiffJPEG's 4-D forms: forward[x, y, u, v] with its alpha scale, inverse[u, v, x, y]."""
  forward = np.zeros((8, 8, 8, 8), np.float32)
  inverse = np.zeros((8, 8, 8, 8), np.float32)
  for a, b, c, d in itertools.product(range(8), repeat=4):
    forward[a, b, c, d] = np.cos((2 * a + 1) * c * np.pi / 16) * np.cos((2 * b + 1) * d * np.pi / 16)
    inverse[a, b, c, d] = np.cos((2 * c + 1) * a * np.pi / 16) * np.cos((2 * d + 1) * b * np.pi / 16)
  alpha = np.array([1 / np.sqrt(2)] + [1] * 7)
  return (torch.from_numpy(forward), torch.from_numpy(inverse),
          torch.from_numpy((np.outer(alpha, alpha) * 0.25).astype(np.float32)),
          torch.from_numpy(np.outer(alpha, alpha).astype(np.float32)))


def reference_diffjpeg(images, quality, libjpeg_orientation=False):
  """DiffJPEG(differentiable=False) on NHWC numpy in [0, 1], step by step in torch float32.

  BasicSR holds the transposed listings and indexes coefficients (vertical, horizontal);
  `libjpeg_orientation` uses the listings as printed instead, as libjpeg does.
  """
  x = torch.from_numpy(np.asarray(images, np.float32)).permute(0, 3, 1, 2)
  n, _, h, w = x.shape
  q = torch.tensor(np.asarray(quality, np.float32))
  factor = torch.where(q < 50, 5000.0 / q, 200.0 - 2 * q) / 100.0
  x = F.pad(x, (0, (16 - w % 16) % 16, 0, (16 - h % 16) % 16))
  hp, wp = x.shape[2:]
  luma_table = torch.tensor(LUMA_K1, dtype=torch.float32)
  luma_table = luma_table if libjpeg_orientation else luma_table.T
  chroma_table = torch.full((8, 8), 99.0)
  chroma_table[:4, :4] = torch.tensor(CHROMA_K2_CORNER, dtype=torch.float32).T
  forward, inverse, scale, alpha = cosine_tensors()

  pixels = x.permute(0, 2, 3, 1) * 255
  r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
  y = 0.299 * r + 0.587 * g + 0.114 * b
  cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
  cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
  cb = F.avg_pool2d(cb[:, None], 2)[:, 0]
  cr = F.avg_pool2d(cr[:, None], 2)[:, 0]

  def code(plane, table):
    ph, pw = plane.shape[1:]
    blocks = plane.view(n, ph // 8, 8, pw // 8, 8).permute(0, 1, 3, 2, 4).reshape(n, -1, 8, 8)
    coefficients = scale * torch.tensordot(blocks - 128, forward, dims=2)
    per_sample = table[None, None] * factor.view(n, 1, 1, 1)
    restored = torch.round(coefficients / per_sample) * per_sample
    blocks = 0.25 * torch.tensordot(restored * alpha, inverse, dims=2) + 128
    return blocks.view(n, ph // 8, pw // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, ph, pw)

  y = code(y, luma_table)
  cb = code(cb, chroma_table).repeat_interleave(2, 1).repeat_interleave(2, 2)
  cr = code(cr, chroma_table).repeat_interleave(2, 1).repeat_interleave(2, 2)
  assert y.shape == (n, hp, wp)
  rgb = torch.stack([y + 1.402 * (cr - 128),
                     y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                     y + 1.772 * (cb - 128)], dim=-1)
  return (torch.clamp(rgb, 0, 255) / 255)[:, :h, :w].numpy()


def photo_crops(sizes):
  """Crops of a natural photo (JPEG error on noise says little about real images)."""
  photo = skimage.data.astronaut().astype(np.float32) / 255
  return [photo[40:40 + h, 100:100 + w] for h, w in sizes]


jitted_jpeg = jax.jit(jpeg.jpeg_compress)


@pytest.mark.parametrize("size", [(37, 53), (48, 64), (21, 100)])
def test_matches_diffjpeg_reference_over_the_quality_range(size):
  (crop,) = photo_crops([size])
  rng = np.random.default_rng(sum(size))
  # A smooth photo crop, the same crop with noise (more coefficients survive), and a noisy
  # image beyond [0, 1]: the function codes what it gets; clamping is the caller's.
  images = np.stack([crop, np.clip(crop + rng.normal(0, 0.05, crop.shape), 0, 1),
                     crop * 1.3 - 0.1]).astype(np.float32)
  for quality in (30.0, 41.5, 50.0, 67.25, 80.0, 95.0):
    qualities = np.full((3,), quality, np.float32)
    got = np.asarray(jitted_jpeg(images, qualities))
    want = reference_diffjpeg(images, qualities)
    assert got.shape == images.shape and got.dtype == np.float32
    assert np.abs(got - want).mean() < 1e-4, (quality, np.abs(got - want).mean())
    # Different rounding of a near-tie moves one coefficient of one block, never more.
    assert np.abs(got - want).max() < 0.05, (quality, np.abs(got - want).max())
    assert 0 <= got.min() and got.max() <= 1


def test_quality_is_per_sample_and_one_program_serves_all_qualities():
  crops = np.stack(photo_crops([(40, 40)] * 2)).astype(np.float32)
  crops[1] = crops[1, ::-1]
  traces = []

  def traced(images, quality):
    traces.append(images.shape)
    return jpeg.jpeg_compress(images, quality)
  counted = jax.jit(traced)
  together = np.asarray(counted(crops, np.array([33.0, 90.0], np.float32)))
  alone = [np.asarray(counted(crops[i:i + 1], np.array([q], np.float32)))[0]
           for i, q in enumerate((33.0, 90.0))]
  np.testing.assert_allclose(together[0], alone[0], atol=1e-6)
  np.testing.assert_allclose(together[1], alone[1], atol=1e-6)
  assert np.abs(together[0] - together[1][::-1]).mean() > 1e-3  # the qualities did differ
  for quality in np.linspace(30, 95, 12, dtype=np.float32):
    counted(crops, np.array([quality, 95 - quality + 30], np.float32))
  assert traces == [(2, 40, 40, 3), (1, 40, 40, 3)]  # one per batch shape, none per quality


def test_within_a_few_levels_of_pillow_jpeg():
  # 8-bit input so that Pillow and jpeg_compress code the same image.
  (crop,) = photo_crops([(128, 192)])
  levels = np.round(crop * 255).astype(np.uint8)
  for quality in (30, 60, 95):
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="JPEG", quality=quality, subsampling=2)
    pillow = np.asarray(Image.open(buffer).convert("RGB"), np.float32)
    inputs = levels[None].astype(np.float32) / 255
    qualities = np.array([quality], np.float32)
    error = np.abs(np.asarray(jitted_jpeg(inputs, qualities))[0] * 255 - pillow).mean()
    # libjpeg rounds its scaled tables to integers and smooths chroma when it upsamples, and
    # BasicSR's luma table is libjpeg's transposed: still a few levels apart on a photo, and
    # nearer to Pillow's output than that output is to the image coded.
    assert error < 4.0, (quality, error)
    assert error < np.abs(pillow - levels).mean(), (quality, error)
    # The orientation is BasicSR's, not libjpeg's: libjpeg's comes out nearer to Pillow.
    libjpeg_like = reference_diffjpeg(inputs, qualities, libjpeg_orientation=True)[0] * 255
    assert np.abs(libjpeg_like - pillow).mean() < error, quality


def test_random_jpeg_draws_a_quality_per_sample_in_range():
  images = jnp.asarray(np.stack(photo_crops([(16, 16)] * 64)))
  out, quality = jax.jit(jpeg.random_jpeg)(jax.random.key(3), images)
  quality = np.asarray(quality)
  assert quality.shape == (64,) and 30 <= quality.min() and quality.max() <= 95
  assert len(np.unique(quality)) == 64
  np.testing.assert_allclose(np.asarray(out), np.asarray(jitted_jpeg(images, quality)), atol=1e-6)
