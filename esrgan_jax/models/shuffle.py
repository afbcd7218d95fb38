"""Depth-to-space, space-to-depth and nearest upsampling on NHWC arrays, in PyTorch's layouts.

PyTorch orders the channels of a pixel-shuffled block as c * f * f + row * f + col; a converted
checkpoint computes the same image only if these follow that order exactly.
"""

import jax
import jax.numpy as jnp


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
  """F.pixel_shuffle: channel c * f * f + row * f + col of a pixel becomes channel c of the
  output pixel at (row, col) of its f x f block."""
  if factor == 1:
    return x
  n, h, w, c = x.shape
  if c % (factor * factor):
    raise ValueError(f"pixel_shuffle: {c} channels do not split into {factor}x{factor} blocks")
  x = x.reshape(n, h, w, c // (factor * factor), factor, factor)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # n, h, row, w, col, c
  return x.reshape(n, h * factor, w * factor, c // (factor * factor))


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
  """F.pixel_unshuffle, pixel_shuffle's inverse."""
  n, h, w, c = x.shape
  if h % factor or w % factor:
    raise ValueError(f"pixel_unshuffle: image size {h}x{w} is not divisible by {factor}")
  x = x.reshape(n, h // factor, factor, w // factor, factor, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, h // factor, w // factor, c * factor * factor)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """F.interpolate(mode='nearest') by an integer factor: every pixel repeated factor x factor."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
