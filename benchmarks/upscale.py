"""Upscaler memory and throughput with a tiny random generator (the figures are about the
upscaler's own memory and batching, not the network's speed).

  python -m benchmarks.upscale memory [--size 2000] [--tile 256]
      One size x size RGB image, x4, through the CLI into a PNG; prints the peak resident memory
      (VmHWM) beside the output's size.
  python -m benchmarks.upscale throughput [--count 100] [--image 64] [--batch_sizes 1 16]
      A folder of `count` image x image images, once per --batch_size; prints images/s (the
      first, compiling pass of each batch size is not timed).
"""

import argparse
import os
import resource
import tempfile
import time

import numpy as np

from esrgan_jax import upscale
from esrgan_jax.data.images import write_image
from esrgan_jax.runtime import backends
from esrgan_jax.weights.generator import arch_of, save_generator
from tests.tiny_generator import tiny_generator


def peak_rss_bytes() -> int:
  """The process's peak resident set (VmHWM), in bytes."""
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_checkpoint(directory: str) -> str:
  model, params = tiny_generator(scale=4, num_block=1, seed=0)
  path = os.path.join(directory, "tiny_x4")
  save_generator(path, params, arch_of(model))
  return path


def memory(args, work: str) -> None:
  checkpoint = make_checkpoint(work)
  rng = np.random.RandomState(0)
  # Smooth content (a PNG of noise would be incompressible), made by strips to stay small.
  image = np.empty((args.size, args.size, 3), np.uint8)
  ramp = np.linspace(0, 255, args.size, dtype=np.float32)
  for top in range(0, args.size, 1024):
    rows = ramp[top:top + 1024, None, None] * 0.5 + ramp[None, :, None] * 0.5
    image[top:top + 1024] = (rows + rng.randint(0, 8, (len(rows), args.size, 3))).clip(0, 255)
  write_image(os.path.join(work, "in.png"), image)
  del image
  before = peak_rss_bytes()
  start = time.perf_counter()
  code = upscale.main([os.path.join(work, "in.png"), "-o", os.path.join(work, "out"),
                       "--checkpoint", checkpoint, "--tile", str(args.tile),
                       "--batch_size", str(args.batch_size)])
  seconds = time.perf_counter() - start
  output_bytes = (args.size * 4) ** 2 * 3
  peak = peak_rss_bytes()
  print(f"memory: {args.size}x{args.size} x4 -> {args.size * 4}x{args.size * 4} RGB PNG, "
        f"tile {args.tile}, exit {code}, {seconds:.1f} s")
  print(f"  uint8 output {output_bytes / 2**30:.2f} GiB; peak RSS {peak / 2**30:.2f} GiB "
        f"(before the upscale {before / 2**30:.2f} GiB); peak minus output "
        f"{(peak - output_bytes) / 2**30:.2f} GiB")


def throughput(args, work: str) -> None:
  checkpoint = make_checkpoint(work)
  rng = np.random.RandomState(0)
  folder = os.path.join(work, "in")
  for i in range(args.count):
    write_image(os.path.join(folder, f"{i:04d}.png"),
                rng.randint(0, 256, (args.image, args.image, 3), np.uint8))
  for batch_size in args.batch_sizes:
    flags = ["--checkpoint", checkpoint, "--batch_size", str(batch_size)]
    upscale.main([folder, "-o", os.path.join(work, f"warm{batch_size}")] + flags)
    start = time.perf_counter()
    code = upscale.main([folder, "-o", os.path.join(work, f"out{batch_size}")] + flags)
    seconds = time.perf_counter() - start
    print(f"throughput: {args.count} images of {args.image}x{args.image}, --batch_size "
          f"{batch_size}: {args.count / seconds:.1f} images/s (exit {code})")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("mode", choices=("memory", "throughput"))
  parser.add_argument("--size", type=int, default=2000)
  parser.add_argument("--tile", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--count", type=int, default=100)
  parser.add_argument("--image", type=int, default=64)
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16])
  args = parser.parse_args(argv)
  backends.start_quietly()  # before the tiny generator's init, not at upscale.main's
  with tempfile.TemporaryDirectory() as work:
    (memory if args.mode == "memory" else throughput)(args, work)


if __name__ == "__main__":
  main()
