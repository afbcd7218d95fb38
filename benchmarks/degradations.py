"""Real-ESRGAN's second-order degradation: compile time, and ms per batch in JAX against PyTorch.

  python -m benchmarks.degradations compile [--batch 4] [--size 256] [--commit REV]
  python -m benchmarks.degradations poisson [--batch 4] [--size 384]
  python -m benchmarks.degradations stages [--batch 12] [--size 256]
  python -m benchmarks.degradations speed [--batch 12] [--sizes 256 400] [--steps 5] \
      [--device cpu|cuda] [--step_ms MS]

compile: trace, lower and compile times of jit(degrade) for a GT batch, as wall time and as this
process's CPU time over all its threads (steadier than wall time on a shared machine).
--commit REV measures esrgan_jax and configs as they were at git revision REV (extracted to a
temporary folder; e.g. 197f6ac, before the compile-time fixes of the degradations).
poisson: compile and run CPU time of noise.sample_poisson against jax.random.poisson on the
means of one noise step (batch x size x size x 4, lam uniform in [0, 256]), and of a rank-4
against a flat jax.random.uniform draw of that shape.
stages: run CPU time of each stage of the pipeline, jitted alone, on the shapes it meets for a
GT batch (the first resize's canvas is 1.5 x the GT size): where the time of a batch goes.
speed: the jitted pipeline (one warm-up call, then --steps timed calls with new draws each,
block_until_ready) and reference/torch_degradations.py (Real-ESRGAN's feed_data as torch ops,
one warm-up call, seeded) on the same GT batch, GT sizes --sizes (Real-ESRGAN crops GT to 400
and its paired crop is 256). JAX runs on its default backend; torch on --device. --step_ms: the time of
one Real-ESRGAN train step on the same device (benchmarks/benchmark.py's gan row at the batch),
to print the degradations' share of it against the issue's targets (< 10%, >= 5x torch).
"""

import argparse
import importlib
import importlib.machinery
import importlib.util
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

# This checkout's, whatever --commit picks: the code it swaps in never imports esrgan_jax.runtime.
from esrgan_jax.runtime import backends

# Imported in main, after --commit has chosen which code: configs.realesrgan_degradation,
# esrgan_jax.data.degradations and its noise module.
degradations = noise = None


def ground_truth(batch, size, seed=0):
  """Photo-like GT: smooth random colour fields with some texture, in [0, 1]."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((batch, size // 16 + 1, size // 16 + 1, 3))
  smooth = np.kron(coarse, np.ones((1, 16, 16, 1)))[:, :size, :size]
  return np.clip(smooth + rng.normal(0, 0.03, smooth.shape), 0, 1).astype(np.float32)


def use_code_at(revision):
  """Imports esrgan_jax and configs as they were at git revision `revision`; their modules
  imported after this come from that revision too (they resolve inside these packages)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  folder = tempfile.mkdtemp(prefix="degradations_at_")
  archive = subprocess.run(["git", "-C", root, "archive", revision, "esrgan_jax", "configs"],
                           check=True, capture_output=True).stdout
  tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder)
  for name in ("esrgan_jax", "configs"):
    spec = importlib.machinery.PathFinder.find_spec(name, [folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # before it runs: its own imports of its modules find it
    spec.loader.exec_module(package)


def measure_compile(batch, size, config):
  gt = jnp.asarray(ground_truth(batch, size))
  fn = jax.jit(lambda key, images: degradations.degrade(key, images, config))
  key = jax.random.key(0, impl="threefry2x32")
  clocks = (time.perf_counter, time.process_time)
  t0 = [c() for c in clocks]
  lowered = fn.lower(key, gt)
  t1 = [c() for c in clocks]
  compiled = lowered.compile()
  t2 = [c() for c in clocks]
  compiled(key, gt).block_until_ready()
  t3 = [c() for c in clocks]
  return dict(trace_lower=(t1[0] - t0[0], t1[1] - t0[1]), compile=(t2[0] - t1[0], t2[1] - t1[1]),
              first_run=(t3[0] - t2[0], t3[1] - t2[1]))


def _cpu_seconds(fn, *args):
  """(compile, run) process CPU seconds of jit(fn) on args; the run after one warm-up call."""
  start = time.process_time()
  compiled = jax.jit(fn).lower(*args).compile()
  compiled_at = time.process_time()
  jax.block_until_ready(compiled(*args))
  run_start = time.process_time()
  jax.block_until_ready(compiled(*args))
  return compiled_at - start, time.process_time() - run_start


def measure_poisson(batch, size):
  shape = (batch, size, size, 4)
  lam = jnp.asarray(np.random.default_rng(0).uniform(0, 256, shape).astype(np.float32))
  keys = jax.random.split(jax.random.key(0, impl="threefry2x32"), batch)
  rows = {
      "noise.sample_poisson, a key per sample": (noise.sample_poisson, keys, lam),
      "jax.random.poisson, rank 4": (lambda k, x: jax.random.poisson(k, x, x.shape), keys[0], lam),
      "jax.random.poisson, flat": (
          lambda k, x: jax.random.poisson(k, x.ravel(), (x.size,)), keys[0], lam),
      "jax.random.uniform, rank 4": (lambda k: jax.random.uniform(k, shape), keys[0]),
      "jax.random.uniform, flat": (
          lambda k: jax.random.uniform(k, (int(np.prod(shape)),)), keys[0]),
  }
  for name, (fn, *args) in rows.items():
    compile_s, run_s = _cpu_seconds(fn, *args)
    print(f"{name:<40} {shape}: compile {compile_s:.2f} s CPU, run {run_s:.3f} s CPU",
          flush=True)


def measure_stages(batch, size, config):
  # pylint: disable-next=g-import-not-at-top
  from esrgan_jax.data.degradations import filters, jpeg, second_order
  (ch, cw), _ = second_order.canvas_sizes(size, size, config)
  rng = np.random.default_rng(0)
  gt = jnp.asarray(rng.random((batch, size, size, 3), np.float32))
  canvas = jnp.asarray(rng.random((batch, ch, cw, 3), np.float32))
  key = jax.random.key(0, impl="threefry2x32")
  keys = second_order.sample_keys_for(key, jnp.arange(batch))
  params = jax.jit(lambda k, s: second_order.sample_params(k, s, config))(key, keys)
  kernel = params["kernel1"]
  valid = (jnp.full((batch,), ch - 7), jnp.full((batch,), cw - 7))
  mask = jnp.ones((batch, ch, cw, 1))
  stages = {
      "usm_sharp (GT)": (filters.usm_sharp, gt),
      "filter2d 21x21 (GT)": (filters.filter2d, gt, kernel),
      "filter2d 21x21 on the canvas": (filters.filter2d, canvas, kernel, valid),
      "jpeg_compress (canvas)": (jpeg.jpeg_compress, canvas, params["jpeg1_quality"]),
      "gaussian_noise (canvas)": (noise.gaussian_noise, keys, canvas, params["noise1"]["sigma"],
                                  params["noise1"]["gray"]),
      "poisson_noise (canvas)": (noise.poisson_noise, keys, canvas,
                                 params["noise1"]["poisson_scale"], params["noise1"]["gray"],
                                 mask),
      "sample_params": (lambda k, s: second_order.sample_params(k, s, config), key, keys),
      "whole pipeline": (lambda k, g: degradations.degrade(k, g, config), key, gt),
  }
  for name, (fn, *args) in stages.items():
    _, run_s = _cpu_seconds(fn, *args)
    print(f"{name:<32} batch {batch}, GT {size}: {run_s * 1000:9.1f} ms CPU", flush=True)


def jax_ms_per_batch(gt, steps, config):
  fn = jax.jit(lambda step, images: degradations.degrade_batch(
      0, step, images, jnp.arange(images.shape[0]), config))
  gt = jnp.asarray(gt)
  fn(0, gt).block_until_ready()
  start = time.perf_counter()
  for step in range(1, steps + 1):
    out = fn(step, gt)
  out.block_until_ready()
  return (time.perf_counter() - start) / steps * 1000, np.asarray(out)


def torch_ms_per_batch(gt, steps, device, scale):
  import torch  # pylint: disable=g-import-not-at-top
  from reference import torch_degradations  # pylint: disable=g-import-not-at-top
  # Seeded: torch's time depends on its draws (scale and mode, noise type, order).
  torch.manual_seed(0)
  random.seed(0)
  np.random.seed(0)
  sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
  images = torch.from_numpy(gt).permute(0, 3, 1, 2).contiguous().to(device)
  with torch.no_grad():
    torch_degradations.degrade(images, scale)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
      out = torch_degradations.degrade(images, scale)
    sync()
  return (time.perf_counter() - start) / steps * 1000, out.permute(0, 2, 3, 1).cpu().numpy()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("mode", choices=("compile", "poisson", "stages", "speed"))
  parser.add_argument("--batch", type=int, default=None, help="compile: 4, speed: 12")
  parser.add_argument("--size", type=int, default=None, help="compile: the GT size (256); "
                      "poisson: the image size (384, the first resize's canvas of a 256 GT)")
  parser.add_argument("--sizes", type=int, nargs="+", default=[256, 400], help="speed: GT sizes")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--scale", type=int, default=4)
  parser.add_argument("--device", default="cpu", help="torch's device: cpu or cuda")
  parser.add_argument("--step_ms", type=float, default=None, help="speed: a train step's ms")
  parser.add_argument("--commit", default=None, help="compile: the code of this git revision")
  args = parser.parse_args(argv)
  if args.commit:
    use_code_at(args.commit)
  global degradations, noise  # pylint: disable=global-statement
  degradations = importlib.import_module("esrgan_jax.data.degradations")
  noise = importlib.import_module("esrgan_jax.data.degradations.noise")
  config = importlib.import_module("configs.realesrgan_degradation").get_degradation_config(
      args.scale)
  package = os.path.dirname(degradations.__file__)
  print("esrgan_jax from " + os.path.abspath(os.path.join(package, "..", "..", "..")))
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  backends.start_quietly()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {os.cpu_count()} CPUs, "
        f"load {load:.2f}", flush=True)
  if args.mode == "poisson":
    measure_poisson(args.batch or 4, args.size or 384)
    return None
  if args.mode == "stages":
    measure_stages(args.batch or 12, args.size or 256, config)
    return None
  if args.mode == "compile":
    batch, size = args.batch or 4, args.size or 256
    times = measure_compile(batch, size, config)
    label = f"at {args.commit}" if args.commit else "now"
    print(f"degrade() at {batch} x {size} x {size}, {label}: " + ", ".join(
        f"{name} {wall:.2f} s wall / {cpu:.2f} s CPU" for name, (wall, cpu) in times.items()),
          flush=True)
    return times
  batch = args.batch or 12
  results = {}
  for size in args.sizes:
    gt = ground_truth(batch, size)
    jax_ms, jax_lr = jax_ms_per_batch(gt, args.steps, config)
    torch_ms, torch_lr = torch_ms_per_batch(gt, args.steps, args.device, args.scale)
    print(f"GT {batch} x {size} x {size} x 3 -> LR {jax_lr.shape[1]}x{jax_lr.shape[2]}: "
          f"jax {jax_ms:.1f} ms/batch, torch ({args.device}) {torch_ms:.1f} ms/batch, "
          f"jax is {torch_ms / jax_ms:.2f}x torch; {batch * 1000 / jax_ms:.1f} vs "
          f"{batch * 1000 / torch_ms:.1f} patches/s", flush=True)
    assert torch_lr.shape == jax_lr.shape, (torch_lr.shape, jax_lr.shape)
    if args.step_ms:
      share = jax_ms / (args.step_ms + jax_ms)
      print(f"  degradations {100 * share:.1f}% of a {args.step_ms:.1f} ms train step plus "
            f"them (target < 10%); {torch_ms / jax_ms:.2f}x torch (target >= 5x)", flush=True)
    results[size] = dict(gt=gt, jax_lr=jax_lr, torch_lr=torch_lr, jax_ms=jax_ms,
                         torch_ms=torch_ms)
  return results


if __name__ == "__main__":
  main()
