"""`--tile 0`'s memory: whole_image.py's estimate against what one whole-image call really takes.

  python -m benchmarks.whole_image_memory [--num_block 1] [--height 480] [--width 854] [--batch 2]

An RRDBNet x4 with 64 features and random weights runs one call of `batch` height x width inputs,
in a child process (an abort is reported, not fatal), with the process's default XLA flags
(runtime/xla_flags.py) and without them (ESRGAN_NO_DEFAULT_XLA_FLAGS=1). Each line: the
estimate (call_memory, from the 64x64 compile), XLA's memory_analysis() at the real size, and the
growth of the child's peak resident memory over the call, or how the child ended.
"""

import argparse
import os
import subprocess
import sys

CHILD = """
import resource, sys
import jax, jax.numpy as jnp, numpy as np
from esrgan_jax.inference import whole_image
from esrgan_jax.inference.apply import apply_generator, jitted_apply
from esrgan_jax.models import RRDBNet
from esrgan_jax.runtime import xla_flags
from tests.tiny_generator import random_params
xla_flags.apply_defaults()
num_block, height, width, batch = map(int, sys.argv[1:])
model = RRDBNet(scale=4, num_feat=64, num_block=num_block, num_grow_ch=32)
params = random_params(model)
estimate = whole_image.call_memory(model, params).need(batch, height, width)
shape = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
stats = jitted_apply(model).lower(model, params, shape).compile().memory_analysis()
compiled = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
print(f"estimate {estimate / 2**20:.0f} MiB, compiled {compiled / 2**20:.0f} MiB", flush=True)
images = np.random.RandomState(0).rand(batch, height, width, 3).astype(np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
np.asarray(apply_generator(model, params, images))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(f"peak resident memory grew {grown / 1024:.0f} MiB", flush=True)
"""


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_block", type=int, default=1)
  parser.add_argument("--height", type=int, default=480)
  parser.add_argument("--width", type=int, default=854)
  parser.add_argument("--batch", type=int, default=2)
  args = parser.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sizes = [str(v) for v in (args.num_block, args.height, args.width, args.batch)]
  for flags in ("default XLA flags", "ESRGAN_NO_DEFAULT_XLA_FLAGS=1"):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root)
    if flags != "default XLA flags":
      env["ESRGAN_NO_DEFAULT_XLA_FLAGS"] = "1"
    done = subprocess.run([sys.executable, "-c", CHILD, *sizes], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode:
      reason = (done.stderr.strip().splitlines() or ["?"])[-1]
      lines.append(f"the call ended the process (status {done.returncode}: {reason})")
    print(f"RRDBNet {args.num_block}x64 x4, {args.batch} x {args.width}x{args.height}, {flags}: "
          + "; ".join(lines), flush=True)


if __name__ == "__main__":
  main()
