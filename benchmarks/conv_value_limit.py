"""The largest input one XLA:CPU convolution takes before it ends the process (`std::bad_alloc`).

  python -m benchmarks.conv_value_limit [--channels 64] [--kernel 3] [--low W] [--high W]
                                        [--step 1] [--batch 1] [--height 1] [--no_default_flags]

One SAME convolution, C -> C channels, NHWC float32, of a batch x height x W x C input, runs in a
child process (an abort is reported, not fatal) under runtime/xla_flags.apply_defaults()
(convolutions through XLA's Eigen kernels), or with ESRGAN_NO_DEFAULT_XLA_FLAGS=1 (XLA's
YNNPACK ones). W is bisected between --low (runs) and --high (aborts) down to --step (--high 0:
--low alone is probed); each probe is printed, then the
boundary in input values (W x C) and in bytes of the k x k float32 patch matrix that XLA:CPU's
Eigen convolution allocates in one piece, beside MemTotal + SwapTotal (inference/whole_image.py).
"""

import argparse
import os
import subprocess
import sys

CHILD = """
import sys
from esrgan_jax.runtime import xla_flags
xla_flags.apply_defaults()
import jax, jax.numpy as jnp
batch, height, width, channels, kernel = map(int, sys.argv[1:])
x = jnp.ones((batch, height, width, channels), jnp.float32)
k = jnp.full((kernel, kernel, channels, channels), 1e-3, jnp.float32)
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
conv(x, k).block_until_ready()
"""


def runs(width: int, args) -> bool:
  channels, kernel, default_flags = args.channels, args.kernel, not args.no_default_flags
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
  if not default_flags:
    env["ESRGAN_NO_DEFAULT_XLA_FLAGS"] = "1"
  sizes = (args.batch, args.height, width, channels, kernel)
  done = subprocess.run([sys.executable, "-c", CHILD, *map(str, sizes)], cwd=root, env=env,
                        capture_output=True, text=True, check=False)
  ending = "runs" if done.returncode == 0 else (
      f"status {done.returncode}: " + (done.stderr.strip().splitlines() or ["?"])[-1].strip())
  values = args.batch * args.height * width * channels
  print(f"  {args.batch}x{args.height}x{width}x{channels} ({values} values), {kernel}x{kernel}, "
        f"{'default XLA flags' if default_flags else 'ESRGAN_NO_DEFAULT_XLA_FLAGS=1'}: {ending}",
        flush=True)
  return done.returncode == 0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--channels", type=int, default=64)
  parser.add_argument("--kernel", type=int, default=3)
  parser.add_argument("--low", type=int, default=10_000_000, help="a width that runs")
  parser.add_argument("--high", type=int, default=12_000_000, help="a width that aborts")
  parser.add_argument("--step", type=int, default=1)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--height", type=int, default=1)
  parser.add_argument("--no_default_flags", action="store_true")
  args = parser.parse_args()
  default_flags = not args.no_default_flags
  low, high = args.low, args.high
  if not runs(low, args) or not high:
    return
  if runs(high, args):
    print(f"--high {high} runs too: no boundary below it")
    return
  while high - low > args.step:
    middle = (low + high) // 2
    if runs(middle, args):
      low = middle
    else:
      high = middle
  flags = "default XLA flags" if default_flags else "ESRGAN_NO_DEFAULT_XLA_FLAGS=1"
  rows = args.batch * args.height * args.channels
  print(f"{args.kernel}x{args.kernel} conv, {args.channels} channels, {flags}: runs at "
        f"{low * rows} input values (W {low}), aborts at {high * rows} (W {high})")
  if default_flags:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
      kib = {line.split(":")[0]: int(line.split()[1]) for line in meminfo}
    patch = args.kernel**2 * 4 * rows
    print(f"  patch matrix: runs at {low * patch:,} bytes, aborts at {high * patch:,}; "
          f"MemTotal + SwapTotal {(kib['MemTotal'] + kib['SwapTotal']) * 1024:,} bytes")


if __name__ == "__main__":
  main()
