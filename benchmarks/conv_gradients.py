"""Milliseconds of one 3x3 convolution's forward pass and of each of its two gradients, JAX
against PyTorch, at the shapes of RRDBNet's dense blocks: the kernel-level view behind the CPU rows
of benchmark.py.

  python -m benchmarks.conv_gradients                                  # the trainer's XLA flags
  ESRGAN_NO_DEFAULT_XLA_FLAGS=1 python -m benchmarks.conv_gradients    # XLA's own defaults

Each figure is the median of --repeats calls after two warm-up calls, on float32 NHWC arrays
(PyTorch: NCHW, its native layout, with torch.nn.grad for the two gradients). `dx` is the input
gradient, `dw` the weight gradient, each computed alone from a given output gradient.

`--formulations xla,im2col,winograd` also times two other ways of writing the same conv in JAX,
whose gradients JAX derives: as one matrix product over the 9 shifted copies of the input
(im2col), and as Winograd's F(2x2, 3x3), which needs 2.25x fewer multiplications. They test
whether a convolution written around XLA:CPU's own kernels could be faster.
"""

import argparse
import os
import statistics
import sys
import time

# batch, side, input channels, output channels: the fused dense block's widest and narrowest
# convolutions, a concatenating block's widest, and the x4 trunk's convolution at 128x128.
DEFAULT_SHAPES = "4x32x64x192,4x32x32x160,4x32x160x32,4x128x64x64,16x32x64x192"
# Winograd F(2x2, 3x3): kernel transform G; the input (B^T) and output (A^T) transforms are written
# out in _winograd_input and _winograd_output, their entries being 0 and +-1.
WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def median_ms(fn, repeats):
  fn()
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def xla_conv(x, kernel):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x, kernel):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  _, height, width, c_in = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  columns = jnp.concatenate([padded[:, i:i + height, j:j + width, :]
                             for i in range(3) for j in range(3)], axis=-1)
  return jnp.einsum("nhwk,ko->nhwo", columns, kernel.reshape(9 * c_in, -1))


def _winograd_input(d0, d1, d2, d3):
  return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _winograd_output(m0, m1, m2, m3):
  return m0 + m1 + m2, m1 - m2 - m3


def winograd_conv(x, kernel):
  """F(2x2, 3x3) on 4x4 input tiles taken every 2 pixels (even height and width)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  batch, height, width, c_in = x.shape
  c_out = kernel.shape[-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = _winograd_input(*[padded[:, r:r + height:2] for r in range(4)])
  tiles = [t for row in rows for t in _winograd_input(*[row[:, :, c:c + width:2]
                                                         for c in range(4)])]
  transformed_x = jnp.stack(tiles).reshape(16, -1, c_in)
  g = jnp.asarray(WINOGRAD_G, x.dtype)
  transformed_kernel = jnp.einsum("ar,rsio,bs->abio", g, kernel, g).reshape(16, c_in, c_out)
  products = jnp.einsum("ptc,pco->pto", transformed_x, transformed_kernel)
  products = products.reshape(4, 4, batch, height // 2, width // 2, c_out)
  by_row = [_winograd_output(*products[a]) for a in range(4)]  # [a][output column]
  out_rows = _winograd_output(*[jnp.stack(by_row[a]) for a in range(4)])  # [output row]
  y = jnp.stack(out_rows)  # (row in tile, column in tile, batch, tile row, tile column, c_out)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(batch, height, width, c_out)


FORMULATIONS = {"xla": xla_conv, "im2col": im2col_conv, "winograd": winograd_conv}


def jax_times(shape, repeats, conv=xla_conv):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  batch, side, c_in, c_out = shape
  rng = np.random.default_rng(0)
  x = rng.random((batch, side, side, c_in), dtype=np.float32)
  kernel = rng.random((3, 3, c_in, c_out), dtype=np.float32)
  grad_out = rng.random((batch, side, side, c_out), dtype=np.float32)
  forward = jax.jit(conv)
  input_grad = jax.jit(lambda g: jax.vjp(conv, x, kernel)[1](g)[0])
  weight_grad = jax.jit(lambda g: jax.vjp(conv, x, kernel)[1](g)[1])
  return dict(
      fwd=median_ms(lambda: jax.block_until_ready(forward(x, kernel)), repeats),
      dx=median_ms(lambda: jax.block_until_ready(input_grad(grad_out)), repeats),
      dw=median_ms(lambda: jax.block_until_ready(weight_grad(grad_out)), repeats))


def torch_times(shape, repeats, threads):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  batch, side, c_in, c_out = shape
  x = torch.rand(batch, c_in, side, side)
  kernel = torch.rand(c_out, c_in, 3, 3)
  grad_out = torch.rand(batch, c_out, side, side)
  with torch.no_grad():
    return dict(
        fwd=median_ms(lambda: torch.nn.functional.conv2d(x, kernel, padding=1), repeats),
        dx=median_ms(lambda: torch.nn.grad.conv2d_input(x.shape, kernel, grad_out, padding=1),
                     repeats),
        dw=median_ms(lambda: torch.nn.grad.conv2d_weight(x, kernel.shape, grad_out, padding=1),
                     repeats))


def parse_shapes(text):
  try:
    shapes = [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
  except ValueError:
    shapes = []
  if not shapes or any(len(s) != 4 or min(s) <= 0 for s in shapes):
    sys.exit(f"benchmarks/conv_gradients.py: --shapes {text!r}: expected "
             f"BATCHxSIDExC_INxC_OUT[,...], e.g. {DEFAULT_SHAPES}")
  return shapes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shapes", default=DEFAULT_SHAPES)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--torch_threads", type=int, default=os.cpu_count())
  parser.add_argument("--formulations", default="xla",
                      help=f"JAX columns, comma separated: {', '.join(FORMULATIONS)}")
  args = parser.parse_args()
  shapes = parse_shapes(args.shapes)
  formulations = args.formulations.split(",")
  unknown = [f for f in formulations if f not in FORMULATIONS]
  if unknown:
    sys.exit(f"benchmarks/conv_gradients.py: --formulations: unknown {unknown}; choose from "
             f"{', '.join(FORMULATIONS)}")
  if "winograd" in formulations and any(side % 2 for _, side, _, _ in shapes):
    sys.exit("benchmarks/conv_gradients.py: --formulations winograd needs even sides")
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  from esrgan_jax.runtime import backends  # pylint: disable=g-import-not-at-top
  backends.start_quietly()
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {os.getloadavg()[0]:.2f}")
  titles = [f"jax {f} fwd / dx / dw (ms)" if f != "xla" else "jax fwd / dx / dw (ms)"
            for f in formulations] + ["torch fwd / dx / dw (ms)"]
  print(f"{'shape (N, side, C_in, C_out)':<30}{'GFLOP':>7}" +
        "".join(f"   {title:>26}" for title in titles))
  for shape in shapes:
    batch, side, c_in, c_out = shape
    gflop = 2 * batch * side * side * c_in * c_out * 9 / 1e9
    times = [jax_times(shape, args.repeats, FORMULATIONS[f]) for f in formulations]
    times.append(torch_times(shape, args.repeats, args.torch_threads))
    cells = ["{fwd:8.1f} {dx:8.1f} {dw:8.1f}".format(**t) for t in times]
    print(f"{str(shape):<30}{gflop:7.2f}" + "".join(f"   {cell:>26}" for cell in cells),
          flush=True)


if __name__ == "__main__":
  main()
