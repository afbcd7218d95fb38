"""Milliseconds of one 3x3 convolution's forward pass and of each of its two gradients, JAX
against PyTorch, at the shapes of RRDBNet's dense blocks: the kernel-level view behind the CPU rows
of benchmark.py.

  python benchmarks/conv_gradients.py                                  # the trainer's XLA flags
  ESRGAN_NO_DEFAULT_XLA_FLAGS=1 python benchmarks/conv_gradients.py    # XLA's own defaults

Each figure is the median of --repeats calls after two warm-up calls, on float32 NHWC arrays
(PyTorch: NCHW, its native layout, with torch.nn.grad for the two gradients). `dx` is the input
gradient, `dw` the weight gradient, each computed alone from a given output gradient.
"""

import argparse
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# batch, side, input channels, output channels: the fused dense block's widest and narrowest
# convolutions, a concatenating block's widest, and the x4 trunk's convolution at 128x128.
DEFAULT_SHAPES = "4x32x64x192,4x32x32x160,4x32x160x32,4x128x64x64,16x32x64x192"


def median_ms(fn, repeats):
  fn()
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def jax_times(shape, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  batch, side, c_in, c_out = shape
  rng = np.random.default_rng(0)
  x = rng.random((batch, side, side, c_in), dtype=np.float32)
  kernel = rng.random((3, 3, c_in, c_out), dtype=np.float32)
  grad_out = rng.random((batch, side, side, c_out), dtype=np.float32)

  def conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
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
  args = parser.parse_args()
  shapes = parse_shapes(args.shapes)
  sys.path.insert(0, REPO_ROOT)
  from esrgan_jax import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {os.getloadavg()[0]:.2f}")
  print(f"{'shape (N, side, C_in, C_out)':<30}{'GFLOP':>7}   "
        f"{'jax fwd / dx / dw (ms)':>26}   {'torch fwd / dx / dw (ms)':>26}")
  for shape in shapes:
    batch, side, c_in, c_out = shape
    gflop = 2 * batch * side * side * c_in * c_out * 9 / 1e9
    ours, theirs = jax_times(shape, args.repeats), torch_times(shape, args.repeats,
                                                               args.torch_threads)
    cells = ["{fwd:8.1f} {dx:8.1f} {dw:8.1f}".format(**t) for t in (ours, theirs)]
    print(f"{str(shape):<30}{gflop:7.2f}   {cells[0]:>26}   {cells[1]:>26}", flush=True)


if __name__ == "__main__":
  main()
