"""torch.nn.functional.interpolate's 'area', 'bilinear' and 'bicubic' as resampling matrices.

A resize along one axis is a matrix product: out = A @ in, with A (out, in). Building A from traced
sizes and scales lets a random resize keep static shapes: the image lives in the top-left corner
of a fixed canvas, A has the canvas's shape, its rows past the output size are zero and its taps
never reach past the input size. So every random scale and mode is the same compiled program.

Semantics (torch, align_corners=False, no antialiasing):
- 'area' is adaptive average pooling: output i averages inputs floor(i in / out) ..
  ceil((i + 1) in / out) - 1 (integer arithmetic, exact).
- 'bilinear': source = r (i + 0.5) - 0.5, negative sources clamped to 0, the upper tap clamped to
  the last pixel.
- 'bicubic': Keys' cubic convolution with a = -0.75 on the same source positions, taps outside the
  image replicated from the border; no clamping of the result.
Here r = in / out for the size form, and 1 / scale_factor for the scale-factor form
(F.interpolate(scale_factor=s)), whose output size is floor(in * s).
"""

import jax
import jax.numpy as jnp

MODES = ("area", "bilinear", "bicubic")
_A = -0.75


def _cubic_weights(t):
  w0 = ((_A * (t + 1) - 5 * _A) * (t + 1) + 8 * _A) * (t + 1) - 4 * _A
  w1 = ((_A + 2) * t - (_A + 3)) * t * t + 1
  u = 1 - t
  w2 = ((_A + 2) * u - (_A + 3)) * u * u + 1
  w3 = ((_A * (u + 1) - 5 * _A) * (u + 1) + 8 * _A) * (u + 1) - 4 * _A
  return jnp.stack([w0, w1, w2, w3], axis=-1)


def _taps_matrix(indices, weights, in_canvas):
  """(out, in_canvas) matrix with weights[i, t] at column indices[i, t] (repeats add up)."""
  one_hot = jax.nn.one_hot(indices, in_canvas, dtype=jnp.float32)  # (out, taps, in)
  return jnp.einsum("ot,oti->oi", weights, one_hot, precision=jax.lax.Precision.HIGHEST)


def resize_matrix(in_size, out_size, in_canvas: int, out_canvas: int, mode, ratio=None):
  """The (out_canvas, in_canvas) matrix of a 1D resize from in_size to out_size samples.

  in_size, out_size: traced or static ints (<= the canvases); mode: a name in MODES or its traced
  index; ratio: the source step per output pixel, in / out when None.
  """
  in_size = jnp.asarray(in_size, jnp.int32)
  out_size = jnp.asarray(out_size, jnp.int32)
  if ratio is None:
    ratio = in_size.astype(jnp.float32) / out_size.astype(jnp.float32)
  ratio = jnp.asarray(ratio, jnp.float32)
  i = jnp.arange(out_canvas, dtype=jnp.int32)
  row_valid = (i < out_size)[:, None]
  last = in_size - 1

  # area: windows in integer arithmetic.
  start = (i * in_size) // out_size
  end = ((i + 1) * in_size + out_size - 1) // out_size
  j = jnp.arange(in_canvas, dtype=jnp.int32)[None]
  window = (j >= start[:, None]) & (j < end[:, None])
  area = window.astype(jnp.float32) / jnp.maximum(end - start, 1)[:, None].astype(jnp.float32)

  src = ratio * (i.astype(jnp.float32) + 0.5) - 0.5
  lin_src = jnp.maximum(src, 0.0)
  i0 = jnp.floor(lin_src).astype(jnp.int32)
  lam = lin_src - i0
  lin_idx = jnp.stack([jnp.minimum(i0, last), jnp.minimum(i0 + 1, last)], axis=-1)
  bilinear = _taps_matrix(lin_idx, jnp.stack([1 - lam, lam], axis=-1), in_canvas)

  c0 = jnp.floor(src).astype(jnp.int32)
  t = src - c0
  cub_idx = jnp.clip(c0[:, None] + jnp.arange(-1, 3)[None], 0, last)
  bicubic = _taps_matrix(cub_idx, _cubic_weights(t), in_canvas)

  if isinstance(mode, str):
    matrix = {"area": area, "bilinear": bilinear, "bicubic": bicubic}[mode]
  else:
    matrix = jnp.where(mode == 0, area, jnp.where(mode == 1, bilinear, bicubic))
  return jnp.where(row_valid, matrix, 0.0)


def apply_resize(images, row_matrices, col_matrices):
  """images (N, H, W, C), row (N, H', H) and column (N, W', W) matrices -> (N, H', W', C)."""
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("noh,nhwc->nowc", row_matrices, images, precision=hi)
  return jnp.einsum("npw,nowc->nopc", col_matrices, x, precision=hi)


def _check_mode(mode):
  if mode not in MODES:
    raise ValueError(f"resize mode must be one of {MODES}, got {mode!r}")


def resize(images, size, mode: str):
  """F.interpolate(images, size=size, mode=mode) on NHWC; size = (out_h, out_w) static."""
  _check_mode(mode)
  n, h, w, _ = images.shape
  rows = resize_matrix(h, size[0], h, size[0], mode)
  cols = resize_matrix(w, size[1], w, size[1], mode)
  return apply_resize(images, jnp.broadcast_to(rows, (n,) + rows.shape),
                      jnp.broadcast_to(cols, (n,) + cols.shape))


def scale_factor_size(size: int, scale_factor) -> int:
  """F.interpolate's output size for a scale factor: floor(size * s)."""
  return int(size * float(scale_factor) // 1)


def resize_scale_factor(images, scale_factor: float, mode: str):
  """F.interpolate(images, scale_factor=s, mode=mode): size floor(in s), coordinates mapped by 1/s
  (not by the ratio of the sizes) for bilinear and bicubic; 'area' uses the sizes only."""
  _check_mode(mode)
  n, h, w, _ = images.shape
  oh, ow = scale_factor_size(h, scale_factor), scale_factor_size(w, scale_factor)
  ratio = None if mode == "area" else 1.0 / float(scale_factor)
  rows = resize_matrix(h, oh, h, oh, mode, ratio)
  cols = resize_matrix(w, ow, w, ow, mode, ratio)
  return apply_resize(images, jnp.broadcast_to(rows, (n,) + rows.shape),
                      jnp.broadcast_to(cols, (n,) + cols.shape))
