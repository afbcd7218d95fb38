"""JPEG compression as Real-ESRGAN applies it: BasicSR's DiffJPEG(differentiable=False), batched.

One program serves every quality: the quality is a traced (N,) array, turned into a per-sample
scale of the quantisation tables, so a jitted caller never recompiles when it changes.
"""

import jax
import jax.numpy as jnp
import numpy as np

# The standard JPEG tables (ITU T.81 Annex K) in their usual listing: row = vertical frequency.
_LUMA_LISTING = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], np.float32)
_CHROMA_LISTING = np.full((8, 8), 99, np.float32)
_CHROMA_LISTING[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

# BasicSR transposes both listings and indexes coefficients (vertical, horizontal), so its luma
# table is libjpeg's mirrored about the diagonal (the chroma table is symmetric). Real-ESRGAN was
# trained with that; we keep it.
LUMA_TABLE = _LUMA_LISTING.T.copy()
CHROMA_TABLE = _CHROMA_LISTING.T.copy()

# JPEG's full-range (JFIF) colour transform, the coefficients DiffJPEG uses.
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], np.float32)
_YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402],
                          [1.0, -0.344136, -0.714136],
                          [1.0, 1.772, 0.0]], np.float32)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)


def _dct_matrix():
  """Orthonormal 8-point DCT-II, D[u, x]: DiffJPEG's 4-D cosine tensor times its alpha scale
  factorises into D on rows and D on columns."""
  u, x = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
  alpha = np.where(u == 0, 1 / np.sqrt(2), 1.0)
  return (0.5 * alpha * np.cos((2 * x + 1) * u * np.pi / 16)).astype(np.float32)


_DCT = _dct_matrix()


def quality_to_factor(quality):
  """DiffJPEG's table scale: 50 / q below 50, else 2 - q / 50; no libjpeg rounding or floor."""
  quality = jnp.asarray(quality, jnp.float32)
  return jnp.where(quality < 50, 5000.0 / quality, 200.0 - quality * 2) / 100.0


def _blocks(plane):
  """(N, H, W) -> (N, H/8, W/8, 8, 8)."""
  n, h, w = plane.shape
  return plane.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _unblocks(blocks):
  n, bh, bw, _, _ = blocks.shape
  return blocks.transpose(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _code_plane(plane, table, factor):
  """DCT, quantise, round, dequantise and inverse DCT of one channel in 0-255 units."""
  dct = jnp.asarray(_DCT)
  scaled_table = jnp.asarray(table)[None] * factor[:, None, None]  # (N, 8, 8)
  coefficients = jnp.einsum("ux,nijxy,vy->nijuv", dct, _blocks(plane - 128.0), dct,
                            precision=jax.lax.Precision.HIGHEST)
  divisor = scaled_table[:, None, None]
  # jnp.round rounds half to even, as torch.round does.
  quantised = jnp.round(coefficients / divisor) * divisor
  restored = jnp.einsum("ux,nijuv,vy->nijxy", dct, quantised, dct,
                        precision=jax.lax.Precision.HIGHEST)
  return _unblocks(restored) + 128.0


def jpeg_compress(images, quality):
  """JPEG-compresses and decodes a batch, as BasicSR's DiffJPEG(differentiable=False) does.

  Args:
    images: (N, H, W, 3) float32 RGB in [0, 1]. Real-ESRGAN clamps to [0, 1] before its JPEG
      steps; that clamp is the caller's (values outside [0, 1] are coded as they are).
    quality: (N,) JPEG quality per sample, float (Real-ESRGAN draws it from U[30, 95]); the
      tables scale continuously with it (see quality_to_factor).

  Returns:
    (N, H, W, 3) float32 in [0, 1]. Neither input nor output is rounded to 8-bit levels; the
    image is zero-padded at the bottom and right to whole 16x16 macroblocks (Y = 0,
    Cb = Cr = 128, as padding RGB with zeros gives) and cropped back; chroma is 4:2:0 by 2x2
    averaging and restored by repetition. Pure and jittable; one program for all qualities.
  """
  images = jnp.asarray(images, jnp.float32)
  n, h, w, _ = images.shape
  factor = jnp.broadcast_to(quality_to_factor(quality), (n,))
  padded = jnp.pad(images, ((0, 0), (0, -h % 16), (0, -w % 16), (0, 0)))
  hp, wp = padded.shape[1:3]
  ycbcr = jnp.einsum("nhwc,kc->nhwk", padded * 255.0, jnp.asarray(_RGB_TO_YCBCR),
                     precision=jax.lax.Precision.HIGHEST) + _CHROMA_OFFSET
  luma = _code_plane(ycbcr[..., 0], LUMA_TABLE, factor)
  # Cb and Cr share a table and a factor: code them as one batch of 2N half-size planes.
  chroma = ycbcr[..., 1:].reshape(n, hp // 2, 2, wp // 2, 2, 2).mean(axis=(2, 4))
  chroma = chroma.transpose(3, 0, 1, 2).reshape(2 * n, hp // 2, wp // 2)
  chroma = _code_plane(chroma, CHROMA_TABLE, jnp.concatenate([factor, factor]))
  chroma = chroma.reshape(2, n, hp // 2, wp // 2).transpose(1, 2, 3, 0)
  chroma = jnp.repeat(jnp.repeat(chroma, 2, axis=1), 2, axis=2)
  decoded = jnp.concatenate([luma[..., None], chroma], axis=-1) - _CHROMA_OFFSET
  rgb = jnp.einsum("nhwk,ck->nhwc", decoded, jnp.asarray(_YCBCR_TO_RGB),
                   precision=jax.lax.Precision.HIGHEST)
  return (jnp.clip(rgb, 0.0, 255.0) / 255.0)[:, :h, :w]


def random_jpeg(key, images, quality_range=(30, 95)):
  """jpeg_compress at a quality drawn from U[quality_range] per sample: (images, quality)."""
  low, high = quality_range
  quality = jax.random.uniform(key, (images.shape[0],), jnp.float32, low, high)
  return jpeg_compress(images, quality), quality
