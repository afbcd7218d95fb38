"""Speed of ESRGAN training and inference: esrgan_jax against the PyTorch reference, one command.

  python benchmarks/benchmark.py                      # full size, on a GPU (RESULTS.md)
  python benchmarks/benchmark.py --num_block 2 --num_feat 32 --d_feat 32 --batch 4 \
      --infer_size 64 --steps 5 --warmup 2 --rows psnr,gan,infer,conv --profile   # small CPU

Rows (each measured for every group):
  psnr   generator-only train step (L1, Adam, EMA): images/s at --batch HR patches of --patch;
  grad   the psnr step without its update: the generator's forward pass and the gradient of the
         L1 loss only, at the same sizes (with an infer row at --infer_size patch/4 and
         --infer_batch batch, it splits the psnr step into forward, backward and update);
  gan    full ESRGAN step, G update (VGG19 conv5_4 L1 + RaGAN + L1 pixel) then D update then EMA,
         with BasicSR's VGG-style discriminator: images/s at the same sizes;
  infer  x4 upscale of --infer_size squares: megapixels of output per second, and peak memory;
  realesrgan  Real-ESRGAN's stage-2 step as esrgan_jax trains it (configs/realesrgan_x4plus.py:
         U-Net D with spectral norm, vanilla GAN, multi-layer perceptual, USM targets) with the
         device-side degradations composed in (realworld_batch.with_degradations, as
         train.make_step_fn does), fed uint8 GT squares of --crop_pad_size: images/s at --batch
         HR crops of --patch. JAX only (reference/torch_models.py has no U-Net D);
  realesrgan_nodeg  the same step without the degradations, fed a ready LR / HR / USM-HR batch
         of the same sizes; with both rows the table ends with the degradations' share of the
         step, (with - without) / with (issue #15's target: under 10% on a GPU);
  conv   one 3x3 conv of the dense block's widest shape, forward + both gradients: TFLOP/s
         (a kernel-level probe: says whether a gap between frameworks is in the convolutions).
Groups (--groups, comma separated): jax:float32, jax:bfloat16 (config.compute_dtype; params and
optimiser in float32), with options :remat (config.model.remat_blocks) and :concat or :fused
(config.model.dense_block; without either, "auto" picks per platform); torch:fp32, torch:amp_bf16
(autocast), with options :compile (torch.compile of G and VGG19) and :channels_last.

Each group runs in its own child process, so every framework has the device to itself and peak
memory belongs to one group. On a shared CPU, `--interleave` runs every group in one child instead,
alternating their calls, so that a load that changes over minutes hits all groups alike (see
run_interleaved). JAX children run esrgan_jax's own steps (steps.make_train_step,
jitted with the state donated, as train.py does) with the XLA flags the trainer adds
(esrgan_jax/runtime/xla_flags.py; ESRGAN_NO_DEFAULT_XLA_FLAGS=1 leaves XLA's own defaults): set
XLA_FLAGS in the environment to try others. Their state has the shapes of
init_train_state's but values drawn by NumPy (see filled_on_host: XLA takes minutes to
compile the real init at full size).
The PyTorch side uses reference/torch_models.py (BasicSR's layouts), torch.optim.Adam,
cudnn.benchmark as BasicSR's train.py sets it, and BasicSR's ESRGANModel order for the GAN step
(D frozen for G's update; D's real and fake terms back-propagated separately, so D runs four
forward passes where the JAX step runs two).

How it times: `--warmup` steps (compilation included) are excluded; each of `--steps` steps is
timed alone between device syncs (jax.block_until_ready / torch.cuda.synchronize) and the median
is reported. A train step reuses one random batch that lives on the device. `--profile` then
traces 3 more steps of each JAX row and sums kernel (GPU) or XLA thunk (CPU) time by name; XLA
turns command buffers (CUDA graphs) off while it traces, so traced wall times run long.

FLOPs: XLA's cost analysis (HloCostAnalysis) of each row's JAX program as lowered, in a child on
the CPU backend (`jitted.lower(...).cost_analysis()['flops']`): on GPU the compiled module holds
the convolutions as cuDNN custom calls, which the GPU cost analysis leaves out. It counts 2 per
multiply-add of every convolution and dot, over the taps that touch the image (zero padding is not
counted), plus one per element of elementwise and reduction ops; for a train step that is the
forward pass, both backward gradients (input and weight), Adam and the EMA. PyTorch rows are
credited with the same count (the useful work of the step), so TFLOP/s and MFU compare like with
like (both the count and the peak table are esrgan_jax/runtime/flops.py's, as the trainer's logged MFU).
MFU is against the dense bf16 peak of the device (H100/H200 SXM: 989 TFLOP/s); float32 rows
also give it against the TF32 peak (494.5), the rate of the tensor cores that cuDNN uses for
float32 convolutions by default in both frameworks. The conv row uses its own count (all taps).

Sizes: `--sizes 32x128,64x192` measures the train rows (and conv) at each batch x HR patch, one
child per group still; infer rows run once (they do not depend on it). `--compile_threads N` makes
each JAX child build and lower its programs one by one, then compile N at a time (XLA compiles
outside the GIL; on a GPU host with many cores this cuts the wall time of a sweep, whose programs
take about a minute each), and time them one by one afterwards. Compile seconds are then each
program's own, overlapped. `--flops_cache DIR` keeps FLOP counts between runs of the same sizes.
`--decide_dense FILE.json...` reads the --json of earlier runs and prints, per row and size, which
dense-block arrangement (:concat or :fused of one precision) was faster, and the line of
esrgan_jax/models/rrdbnet.py's AUTO_DENSE_BLOCK to change for that platform.

Peak memory: on GPU, JAX's `peak_bytes_in_use` (cumulative over a child's rows, which run infer
first, then psnr, then gan) and torch.cuda.max_memory_allocated (reset before each row); on CPU
the process's peak resident set size, runtime libraries included. JAX rows also give the compiled
program's own memory (XLA's memory_analysis: arguments + outputs + temporaries - aliased), which
does not depend on what else the child holds.
"""

import argparse
import concurrent.futures
import copy
import dataclasses
import faulthandler
import functools
import glob
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, "tests")

# Run in this order inside a child.
ROWS = ("infer", "grad", "psnr", "gan", "realesrgan", "realesrgan_nodeg", "conv")
REALESRGAN_ROWS = ("realesrgan", "realesrgan_nodeg")  # JAX only
TRAIN_ROWS = ("psnr", "gan") + REALESRGAN_ROWS  # the state is donated from step to step
JAX_PRECISIONS = ("float32", "bfloat16")
TORCH_PRECISIONS = ("fp32", "amp_bf16")
OPTIONS = {"jax": ("remat", "concat", "fused"), "torch": ("compile", "channels_last")}
# BasicSR's train_ESRGAN_x4 loss weights and optimiser settings, for the PyTorch step.
PIXEL_WEIGHT, PERCEPTUAL_WEIGHT, GAN_WEIGHT = 1e-2, 1.0, 5e-3
EMA_DECAY = 0.999
SCALE = 4
GAN_PATCHES = (128, 256)  # what BasicSR's VGG-style discriminator takes
INTERLEAVED = "interleaved"  # the child that runs every group (--interleave)


@dataclasses.dataclass(frozen=True)
class Group:
  """One framework at one precision, with options: the unit a child process measures."""
  framework: str
  precision: str
  options: tuple

  @property
  def name(self):
    return ":".join((self.framework, self.precision) + self.options)

  @property
  def bf16(self):
    return self.precision in ("bfloat16", "amp_bf16")


def parse_group(spec: str) -> Group:
  parts = spec.strip().split(":")
  framework, precisions = parts[0], {"jax": JAX_PRECISIONS, "torch": TORCH_PRECISIONS}
  if framework not in precisions or len(parts) < 2 or parts[1] not in precisions[framework]:
    raise ValueError(f"--groups: bad group {spec!r}; expected "
                     f"jax:float32|bfloat16[:remat][:concat|:fused] or "
                     f"torch:fp32|amp_bf16[:compile][:channels_last]")
  unknown = [o for o in parts[2:] if o not in OPTIONS[framework]]
  if unknown:
    raise ValueError(f"--groups: unknown option(s) {unknown} in {spec!r}; "
                     f"{framework} takes {OPTIONS[framework]}")
  return Group(framework, parts[1], tuple(parts[2:]))


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_block", type=int, default=23)
  parser.add_argument("--num_feat", type=int, default=64)
  parser.add_argument("--num_grow_ch", type=int, default=32)
  parser.add_argument("--d_feat", type=int, default=64, help="discriminator width")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--patch", type=int, default=128, help="HR patch; the VGG-style D takes "
                      "128 or 256 (the gan row needs one of them)")
  parser.add_argument("--crop_pad_size", type=int, default=400, help="side of the GT squares "
                      "the realesrgan row degrades (config.data.crop_pad_size; >= every patch)")
  parser.add_argument("--infer_size", type=int, default=256, help="LR side of the infer row")
  parser.add_argument("--infer_batch", type=int, default=1)
  parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps, compilation included")
  parser.add_argument("--rows", default="psnr,gan,infer", help=f"subset of {ROWS}")
  parser.add_argument("--groups", default="", help="default: jax:float32,torch:fp32 on CPU, "
                      "plus jax:bfloat16,torch:amp_bf16 where nvidia-smi finds a GPU")
  parser.add_argument("--profile", action="store_true",
                      help="JAX groups: trace 3 steps per row and print where the time goes")
  parser.add_argument("--group_timeout", type=float, default=0, help="seconds per group, 0: none")
  parser.add_argument("--total_timeout", type=float, default=0,
                      help="seconds for all groups; the groups left get what remains, 0: none")
  parser.add_argument("--interleave", action="store_true",
                      help="CPU: run every group in one process, alternating their calls, so "
                      "that a shared machine's changing load hits all groups alike")
  parser.add_argument("--json", default="", help="also write every measurement to this file")
  parser.add_argument("--sizes", default="", help="train rows at each BATCHxPATCH, comma "
                      "separated (e.g. 32x128,64x192); default: --batch x --patch")
  parser.add_argument("--compile_threads", type=int, default=1,
                      help="JAX: compile this many programs of a child at once, then time them")
  parser.add_argument("--flops_cache", default="", help="directory keeping FLOP counts per size")
  parser.add_argument("--decide_dense", nargs="*", default=None, metavar="JSON",
                      help="print the dense-block decision from these --json files and exit")
  parser.add_argument("--report", nargs="*", default=None, metavar="JSON",
                      help="print one table (and the JAX / PyTorch ratios) of the rows of these "
                      "--json files, which must share the model's sizes, and exit")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  parser.add_argument("--child_output", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
  bad = [r for r in args.rows if r not in ROWS]
  if bad:
    parser.error(f"--rows: unknown row(s) {bad}; choose from {ROWS}")
  try:
    args.sizes = [tuple(int(n) for n in size.lower().split("x"))
                  for size in args.sizes.split(",") if size.strip()]
  except ValueError:
    parser.error(f"--sizes {args.sizes!r}: expected BATCHxPATCH[,BATCHxPATCH...], e.g. 32x128")
  if any(len(size) != 2 for size in args.sizes):
    parser.error(f"--sizes: expected BATCHxPATCH pairs, got {args.sizes}")
  args.sizes = args.sizes or [(args.batch, args.patch)]
  args.batch, args.patch = args.sizes[0]
  if "gan" in args.rows and not any(patch in GAN_PATCHES for _, patch in args.sizes):
    parser.error(f"patch {args.patch}: the gan row's VGG-style discriminator takes 128 or 256")
  for batch, patch in args.sizes:
    if patch % SCALE:
      parser.error(f"patch {patch} is not divisible by the scale {SCALE}")
    if batch < 1:
      parser.error(f"batch {batch} must be positive")
  if any(r in REALESRGAN_ROWS for r in args.rows) and any(
      patch > args.crop_pad_size for _, patch in args.sizes):
    parser.error(f"--crop_pad_size {args.crop_pad_size} is smaller than a patch of {args.sizes}")
  if args.interleave and args.profile:
    parser.error("--profile traces one group at a time; leave out --interleave")
  if min(args.steps, args.batch, args.num_block, args.num_feat, args.infer_size,
         args.compile_threads) < 1:
    parser.error("--steps, --batch, --num_block, --num_feat, --infer_size and --compile_threads "
                 "must be positive")
  return args


def sized(args, batch, patch):
  """`args` at one train size: what every row builder reads."""
  one = copy.copy(args)
  one.batch, one.patch = batch, patch
  return one


def size_plan(args):
  """(args at one size, the rows measured at it): infer rows once, at the first size; gan rows
  at the sizes whose patch the discriminator takes."""
  rows = [r for r in ROWS if r in args.rows]
  return [(sized(args, batch, patch),
           [r for r in rows if (i == 0 or r != "infer") and (r != "gan" or patch in GAN_PATCHES)])
          for i, (batch, patch) in enumerate(args.sizes)]


def size_name(row, batch, patch):
  return row if row == "infer" else f"{row}:{batch}x{patch}"


# ------------------------------------------------------------------------------------------------
# Shared by both frameworks.


def time_interleaved(calls, warmup: int, steps: int):
  """`calls`: (run_once, sync) pairs. Per pair, the wall times of `steps` calls, each synced
  alone and taken in turn with the other pairs' calls, and the seconds its `warmup` untimed calls
  took."""
  warmup_s = []
  for run_once, sync in calls:
    start = time.perf_counter()
    for _ in range(warmup):
      sync(run_once())
    warmup_s.append(time.perf_counter() - start)
  times = [[] for _ in calls]
  for _ in range(steps):
    for (run_once, sync), its_times in zip(calls, times):
      start = time.perf_counter()
      sync(run_once())
      its_times.append(time.perf_counter() - start)
  return times, warmup_s


def median_step_seconds(run_once, sync, warmup: int, steps: int):
  """Median wall time of `steps` calls, each synced alone, after `warmup` untimed calls."""
  (times,), (warmup_s,) = time_interleaved([(run_once, sync)], warmup, steps)
  return statistics.median(times), times, warmup_s


def peak_rss_bytes():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def row_result(row, seconds, times, warmup_s, *, args, batch, **extra):
  if row == "infer":
    amount, unit = batch * (args.infer_size * SCALE) ** 2 / 1e6, "MP/s"
  elif row == "conv":
    amount, unit = conv_probe_flops(args) / 1e12, "TFLOP/s"
  else:
    amount, unit = batch, "img/s"
  return dict(row=row, seconds=seconds, rate=amount / seconds, unit=unit, warmup_s=warmup_s,
              times=times, batch=args.batch, patch=args.patch,
              size=size_name(row, args.batch, args.patch), **extra)


def conv_probe_shape(args):
  """The dense block's widest conv (conv5: num_feat + 4 * grow -> num_feat) at LR patch size."""
  side = args.patch // SCALE
  return args.batch, side, side, args.num_feat + 4 * args.num_grow_ch, args.num_feat


def conv_probe_flops(args):
  """Forward + input gradient + weight gradient, 2 per multiply-add, padding taps included."""
  n, h, w, c_in, c_out = conv_probe_shape(args)
  return 3 * 2 * n * h * w * 9 * c_in * c_out


# Kernel (GPU) or thunk (CPU) names -> what they do. XLA names its own kernels after the fusion
# ("loop_concatenate_fusion_3", "input_reduce_fusion"); cuDNN's carry xmma/fprop/dgrad/wgrad.
def op_category(name: str) -> str:
  lowered = name.lower()
  if "concatenate" in lowered:
    return "concatenate"
  if lowered.startswith(("ynn_fusion", "xnn_fusion")):
    return "xnnpack fusion"  # XLA:CPU hands convolutions (and what it fuses with them) to XNNPACK
  if any(k in lowered for k in ("fusion", "wrapped_", "loop_", "input_")):
    return "xla fusion"
  if "convert" not in lowered and any(
      k in lowered for k in ("conv", "xmma", "fprop", "dgrad", "wgrad", "cudnn", "implicit")):
    return "convolution"
  if any(k in lowered for k in ("gemm", "dot", "cublas", "cutlass")):
    return "matmul"
  if any(k in lowered for k in ("memcpy", "memset", "copy")):
    return "copy"
  return "other"


# ------------------------------------------------------------------------------------------------
# JAX.


def jax_config(args, group, stage):
  from configs import esrgan, esrgan_psnr, realesrgan_x4plus  # pylint: disable=g-import-not-at-top
  modules = {"gan": esrgan, "psnr": esrgan_psnr, "realesrgan": realesrgan_x4plus}
  config = modules[stage].get_config()
  config.model.update(num_feat=args.num_feat, num_block=args.num_block,
                      num_grow_ch=args.num_grow_ch, remat_blocks="remat" in group.options)
  for dense_block in ("concat", "fused"):
    if dense_block in group.options:
      config.model.dense_block = dense_block
  config.compute_dtype = group.precision
  config.data.patch_size = args.patch
  config.train.batch_size = args.batch
  if stage != "psnr":
    config.discriminator.num_feat = args.d_feat
  if stage == "realesrgan":
    config.data.crop_pad_size = args.crop_pad_size
  return config


def jax_trace_summary(run_once, sync, num_steps=3, top=8):
  """Traces `num_steps` calls and sums device kernel (GPU) or XLA thunk (CPU) time by name."""
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as directory:
    start = time.perf_counter()
    with jax.profiler.trace(directory):
      for _ in range(num_steps):
        sync(run_once())
    wall = (time.perf_counter() - start) / num_steps
    (path,) = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  device_planes = [p for p in data.planes if p.name.startswith("/device:GPU")]
  totals, counts, line_names = {}, {}, set()
  for plane in device_planes or [p for p in data.planes if p.name == "/host:CPU"]:
    for line in plane.lines:
      line_names.add(line.name)
      if device_planes and not line.name.startswith("Stream"):
        continue  # GPU: kernels live on the stream lines
      if not device_planes and not line.name.startswith("tf_XLA"):
        continue  # CPU: XLA's thunks run on its own thread pools
      for event in line.events:
        if "::" in event.name or event.duration_ns <= 0:
          continue  # thread-pool bookkeeping, not work
        totals[event.name] = totals.get(event.name, 0.0) + event.duration_ns / 1e9 / num_steps
        counts[event.name] = counts.get(event.name, 0) + 1
  by_category = {}
  for name, seconds in totals.items():
    by_category[op_category(name)] = by_category.get(op_category(name), 0.0) + seconds
  busy = sum(totals.values())
  ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
  return dict(
      where="GPU kernels" if device_planes else "CPU XLA thunks (summed over threads)",
      wall_s=wall, busy_s=busy, ops_per_step=sum(counts.values()) / num_steps,
      categories=dict(sorted(by_category.items(), key=lambda kv: -kv[1])),
      lines=sorted(line_names),
      top=[(name, seconds, counts[name] / num_steps) for name, seconds in ranked])


def progress(message):
  print(f"    [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def filled_on_host(abstract, seed=0):
  """A pytree shaped like `abstract` (from jax.eval_shape) with values made by NumPy.

  XLA takes minutes to compile the init of RRDBNet's ~350 randomly initialised layers (jitted or
  op by op); a speed test needs plausible values only: kernels ~ N(0, 1 / fan_in), BatchNorm
  scales and variances one, everything else zero (biases, Adam moments, counters, means).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    names = [str(getattr(k, "key", getattr(k, "name", ""))) for k in path]
    in_moments = any(n in ("mu", "nu") for n in names)
    if names[-1] == "kernel" and not in_moments:
      fan_in = int(np.prod(x.shape[:-1]))
      value = rng.standard_normal(x.shape, np.float32) / np.sqrt(fan_in)
    elif names[-1] in ("scale", "var") and not in_moments:
      value = np.ones(x.shape, np.float32)
    elif names[-1] == "u":  # spectral norm's power-iteration vector: a zero one divides by 0
      value = np.full(x.shape, 1 / np.sqrt(max(x.size, 1)), np.float32)
    else:
      value = np.zeros(x.shape, x.dtype)
    return jax.device_put(value.astype(x.dtype))
  return jax.tree_util.tree_map_with_path(leaf, abstract)


@dataclasses.dataclass
class Measurable:
  """One row of one group, built (and compiled) and ready to time."""
  row: str
  run_once: Any
  sync: Any
  batch: int  # images per call
  facts: dict  # known before timing: device, versions, compile time, ...
  peak_bytes: Any  # () -> bytes, read after timing
  trace: Any = None  # () -> jax_trace_summary of more calls (JAX only)
  args: Any = None  # the arguments at this row's size


def jax_measurables(args, group):
  """Builds and compiles the requested rows of a JAX group one at a time, as they are timed."""
  import jax  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  facts = dict(device=device.device_kind if on_gpu else platform.processor() or "cpu",
               platform=device.platform, versions=f"jax {jax.__version__}",
               xla_flags=os.environ.get("XLA_FLAGS", ""))

  def peak_bytes():
    stats = device.memory_stats() if on_gpu else None
    return stats["peak_bytes_in_use"] if stats else peak_rss_bytes()

  def build(sized_args, row):
    name = f"{group.name} {size_name(row, sized_args.batch, sized_args.patch)}"
    progress(f"{name}: building and lowering")
    start = time.perf_counter()
    jitted, example, batch = jax_row_program(sized_args, group, row, concrete=True)
    return name, row, jitted.lower(*example), example, batch, time.perf_counter() - start

  def compile_one(name, lowered):
    start = time.perf_counter()
    compiled = lowered.compile()
    progress(f"{name}: compiled in {time.perf_counter() - start:.1f} s")
    return compiled, time.perf_counter() - start

  plan = [(sized_args, row) for sized_args, rows in size_plan(args) for row in rows]
  if args.compile_threads > 1:  # all built first, compiled together, then timed one by one
    built = [build(*item) for item in plan]
    with concurrent.futures.ThreadPoolExecutor(args.compile_threads) as pool:
      futures = [pool.submit(compile_one, b[0], b[2]) for b in built]
    ready = [(item, b, future.result()) for item, b, future in zip(plan, built, futures)]
  else:  # one at a time, as they are timed
    ready = ((item, b, compile_one(b[0], b[2])) for item in plan for b in [build(*item)])
  for (sized_args, row), (_, _, _, example, batch, lower_s), (compiled, compile_s) in ready:
    if row in TRAIN_ROWS:
      holder = list(example)  # the state is donated: each step feeds the next its output

      def run_step(compiled=compiled, holder=holder):
        holder[0], metrics = compiled(*holder)
        return holder[0], metrics
    else:
      run_step = functools.partial(compiled, *example)
    memory = compiled.memory_analysis()
    program_bytes = None
    if memory is not None:
      program_bytes = sum(getattr(memory, f"{kind}_size_in_bytes", 0) or 0
                          for kind in ("argument", "output", "temp"))
      program_bytes -= getattr(memory, "alias_size_in_bytes", 0) or 0
    yield Measurable(row, run_step, jax.block_until_ready, batch,
                     dict(facts, compile_s=lower_s + compile_s,
                          compile_threads=args.compile_threads,
                          temp_bytes=getattr(memory, "temp_size_in_bytes", None),
                          program_bytes=program_bytes),
                     peak_bytes, functools.partial(jax_trace_summary, run_step,
                                                   jax.block_until_ready), args=sized_args)
    del example, run_step, compiled


def jax_row_program(args, group, row, concrete: bool):
  """(jitted function, its arguments, images per call) of one row.

  With `concrete` False the arguments are jax.ShapeDtypeStructs: enough to lower the program
  (and count its FLOPs) without allocating or initialising anything.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from esrgan_jax.training import losses, realworld_batch  # pylint: disable=g-import-not-at-top
  from esrgan_jax.training import steps
  from esrgan_jax.training.state import build_generator, build_networks, init_train_state
  keys = jax.random.split(jax.random.key(0), 5)
  realise = filled_on_host if concrete else (lambda tree: tree)

  def random_array(key, shape, dtype=jnp.float32, scale=1.0):
    if not concrete:
      return jax.ShapeDtypeStruct(shape, dtype)
    return (jax.random.uniform(key, shape, jnp.float32) * scale).astype(dtype)

  if row == "infer":
    generator = build_generator(jax_config(args, group, "psnr"))
    side = args.infer_size
    images = random_array(keys[0], (args.infer_batch, side, side, 3))
    params = realise(jax.eval_shape(generator.init, keys[1], images))["params"]
    upscale = jax.jit(lambda p, x: generator.apply({"params": p}, x))
    return upscale, (params, images), args.infer_batch
  if row == "conv":
    n, h, w, c_in, c_out = conv_probe_shape(args)
    dtype = jnp.dtype(group.precision)

    def conv_loss(x, kernel):
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.sum(y.astype(jnp.float32) ** 2)

    return (jax.jit(jax.grad(conv_loss, argnums=(0, 1))),
            (random_array(keys[0], (n, h, w, c_in), dtype),
             random_array(keys[1], (3, 3, c_in, c_out), dtype, scale=0.05)), args.batch)
  patch, lr_patch = args.patch, args.patch // SCALE
  if row == "grad":
    generator = build_generator(jax_config(args, group, "psnr"))
    lr_images = random_array(keys[1], (args.batch, lr_patch, lr_patch, 3))
    hr_images = random_array(keys[0], (args.batch, patch, patch, 3))
    params = realise(jax.eval_shape(generator.init, keys[2], lr_images))["params"]

    def l1_loss(params, lr_images, hr_images):
      output = generator.apply({"params": params}, lr_images).astype(jnp.float32)
      return losses.l1_loss(output, hr_images)
    return jax.jit(jax.grad(l1_loss)), (params, lr_images, hr_images), args.batch
  config = jax_config(args, group, "realesrgan" if row in REALESRGAN_ROWS else row)
  networks = build_networks(config)
  state = realise(jax.eval_shape(
      lambda key: init_train_state(networks, config, key), keys[2]))
  batch = {"hr": random_array(keys[0], (args.batch, patch, patch, 3)),
           "lr": random_array(keys[1], (args.batch, lr_patch, lr_patch, 3))}
  train_step = steps.make_train_step(networks, config)
  if row == "realesrgan":
    # GT squares on 8-bit levels, as the host pipeline hands them over.
    side = args.crop_pad_size
    batch = {"hr": random_array(keys[0], (args.batch, side, side, 3), jnp.uint8, scale=255.0)}
    train_step = realworld_batch.with_degradations(train_step, config)
  elif row == "realesrgan_nodeg":
    batch["hr_usm"] = random_array(keys[4], (args.batch, patch, patch, 3))
  return jax.jit(train_step, donate_argnums=0), (state, batch, keys[3]), args.batch


def count_jax_flops(args, report):
  """XLA's FLOP count of every row's program, lowered for the CPU (run with JAX_PLATFORMS=cpu).

  HloCostAnalysis on the HLO as lowered counts every convolution; on GPU the compiled module
  holds them as cuDNN custom calls, which the GPU cost analysis leaves out.
  """
  from esrgan_jax.runtime import flops as flop_counts  # pylint: disable=g-import-not-at-top
  for sized_args, rows in size_plan(args):
    for row in [r for r in rows if r != "conv"]:
      jitted, example, _ = jax_row_program(sized_args, Group("jax", "float32", ()), row,
                                           concrete=False)
      start = time.perf_counter()
      flops = flop_counts.flops_of(jitted, *example) or 0.0
      name = size_name(row, sized_args.batch, sized_args.patch)
      report(dict(row=row, size=name, flops=flops))
      progress(f"{name}: {flops:.4g} FLOPs per call (lowered in "
               f"{time.perf_counter() - start:.1f} s)")


# ------------------------------------------------------------------------------------------------
# PyTorch.


def torch_measurables(args, group):
  """Builds the requested rows of a PyTorch group one at a time, as they are timed."""
  for sized_args, rows in size_plan(args):
    yield from torch_measurables_at(sized_args, group,
                                    [r for r in rows if r not in REALESRGAN_ROWS])


def torch_measurables_at(args, group, rows):
  """torch_measurables at one size."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, TESTS_DIR)
  from reference import torch_models as ref  # pylint: disable=g-import-not-at-top

  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  torch.backends.cudnn.benchmark = True  # as BasicSR's train.py
  amp = group.precision == "amp_bf16"
  memory_format = torch.channels_last if "channels_last" in group.options else torch.contiguous_format
  facts = dict(device=torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
               platform="gpu" if cuda else "cpu", versions=f"torch {torch.__version__}",
               threads=torch.get_num_threads())
  generator = torch.Generator(device="cpu").manual_seed(0)

  def autocast():
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

  def sync(_):
    if cuda:
      torch.cuda.synchronize()

  def prepare(module, compile_it=True):
    module = module.to(device, memory_format=memory_format)
    return torch.compile(module) if compile_it and "compile" in group.options else module

  def images(n, side):
    x = torch.rand((n, 3, side, side), generator=generator)
    return x.to(device, memory_format=memory_format)

  def make_ema(module):
    ema = [p.detach().clone() for p in module.parameters()]
    params = list(module.parameters())

    @torch.no_grad()
    def update():
      torch._foreach_mul_(ema, EMA_DECAY)  # pylint: disable=protected-access
      torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - EMA_DECAY)  # pylint: disable=protected-access
    return update

  def measurable(row, run_once, batch):
    if cuda:
      torch.cuda.empty_cache()
      torch.cuda.reset_peak_memory_stats()
    return Measurable(row, run_once, sync, batch, facts,
                      torch.cuda.max_memory_allocated if cuda else peak_rss_bytes, args=args)

  def new_generator():
    return ref.RRDBNet(num_feat=args.num_feat, num_block=args.num_block,
                       num_grow_ch=args.num_grow_ch)

  for row in rows:
    if row == "infer":
      net_g = prepare(new_generator().eval())
      x = images(args.infer_batch, args.infer_size)

      def upscale(net_g=net_g, x=x):
        with torch.inference_mode(), autocast():
          return net_g(x)

      yield measurable(row, upscale, args.infer_batch)
    elif row == "conv":
      n, h, w, c_in, c_out = conv_probe_shape(args)
      x = torch.rand((n, c_in, h, w), generator=generator).to(device, memory_format=memory_format)
      x.requires_grad_(True)
      weight = (torch.randn((c_out, c_in, 3, 3), generator=generator) * 0.05).to(device)
      weight = weight.to(memory_format=memory_format).requires_grad_(True)

      def conv_grads(x=x, weight=weight):
        with autocast():
          y = F.conv2d(x, weight, padding=1)
        return torch.autograd.grad(y.float().square().sum(), (x, weight))

      yield measurable(row, conv_grads, args.batch)
    else:
      net_g = new_generator().to(device, memory_format=memory_format)
      run_g = prepare(net_g)
      optimizer_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.9, 0.99))
      ema_update = make_ema(net_g)
      lq, gt = images(args.batch, args.patch // SCALE), images(args.batch, args.patch)
      if row in ("grad", "psnr"):

        def l1_backward(run_g=run_g, optimizer_g=optimizer_g, lq=lq, gt=gt):
          optimizer_g.zero_grad(set_to_none=True)
          with autocast():
            loss = F.l1_loss(run_g(lq).float(), gt)
          loss.backward()
          return loss

        def psnr_step(l1_backward=l1_backward, optimizer_g=optimizer_g, ema_update=ema_update):
          loss = l1_backward()
          optimizer_g.step()
          ema_update()
          return loss

        yield measurable(row, l1_backward if row == "grad" else psnr_step, args.batch)
      else:
        net_d = ref.VGGStyleDiscriminator(num_feat=args.d_feat, input_size=args.patch).to(
            device, memory_format=memory_format)
        # D's parameters flip requires_grad every step, which torch.compile would guard on.
        run_d = net_d
        vgg = ref.VGG19FeatureExtractor(layers=("conv5_4",)).eval().requires_grad_(False)
        run_vgg = prepare(vgg)
        optimizer_d = torch.optim.Adam(net_d.parameters(), lr=1e-4, betas=(0.9, 0.99))
        for group_ in optimizer_g.param_groups:
          group_["lr"] = 1e-4

        def bce(logits, target):
          return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(
              logits.float(), target))

        def gan_step(run_g=run_g, lq=lq, gt=gt, ema_update=ema_update, run_vgg=run_vgg):
          # BasicSR ESRGANModel.optimize_parameters: G first with D frozen ...
          net_d.requires_grad_(False)
          optimizer_g.zero_grad(set_to_none=True)
          with autocast():
            output = run_g(lq)
            l_pix = PIXEL_WEIGHT * F.l1_loss(output.float(), gt)
            l_percep = PERCEPTUAL_WEIGHT * F.l1_loss(
                run_vgg(output)["conv5_4"].float(), run_vgg(gt)["conv5_4"].float().detach())
            real_pred = run_d(gt).detach()
            fake_pred = run_d(output)
            l_gan = GAN_WEIGHT * (bce(real_pred - fake_pred.mean(), 0.0) +
                                  bce(fake_pred - real_pred.mean(), 1.0)) / 2
          (l_pix + l_percep + l_gan).backward()
          optimizer_g.step()
          # ... then D, its real and fake halves back-propagated one after the other ...
          net_d.requires_grad_(True)
          optimizer_d.zero_grad(set_to_none=True)
          with autocast():
            fake_pred = run_d(output).detach()
            real_pred = run_d(gt)
            l_d_real = 0.5 * bce(real_pred - fake_pred.mean(), 1.0)
          l_d_real.backward()
          with autocast():
            fake_pred = run_d(output.detach())
            l_d_fake = 0.5 * bce(fake_pred - real_pred.detach().mean(), 0.0)
          l_d_fake.backward()
          optimizer_d.step()
          ema_update()  # ... then the EMA of G.
          return l_d_fake

        yield measurable(row, gan_step, args.batch)


def measurables(args, group):
  return (jax_measurables if group.framework == "jax" else torch_measurables)(args, group)


def run_group(args, group, report):
  for measurable in measurables(args, group):
    seconds, times, warmup_s = median_step_seconds(measurable.run_once, measurable.sync,
                                                   args.warmup, args.steps)
    result = row_result(measurable.row, seconds, times, warmup_s, args=measurable.args,
                        batch=measurable.batch, peak_bytes=measurable.peak_bytes(),
                        **measurable.facts)
    report(result)
    if args.profile and measurable.trace:
      try:
        result["profile"] = measurable.trace()
        report(result, update=True)
      except Exception as error:  # pylint: disable=broad-except
        progress(f"profile of {measurable.row} failed: {error!r}")


def run_interleaved(args, groups, report):
  """Every group in this one process, one call of each in turn, each call timed alone.

  On a shared CPU the load drifts over minutes, which moves figures measured one group after
  another by more than the gaps between frameworks; alternating calls puts every group under the
  same load. Peak memory is left out: the groups share the process. With several --sizes, every
  row of every size is built first and all of them alternate, so that sizes compare as fairly as
  groups do.
  """
  if len(args.sizes) > 1:
    pairs = [(group, m) for group in groups for m in list(measurables(args, group))]
    rounds = [pairs]
  else:
    rounds = (list(zip(groups, row_of_each_group))
              for row_of_each_group in zip(*(measurables(args, group) for group in groups)))
  for pairs in rounds:
    times, warmup_s = time_interleaved([(m.run_once, m.sync) for _, m in pairs],
                                       args.warmup, args.steps)
    for (group, measurable), its_times, its_warmup_s in zip(pairs, times, warmup_s):
      report(row_result(measurable.row, statistics.median(its_times), its_times, its_warmup_s,
                        args=measurable.args, batch=measurable.batch, group=group.name,
                        **measurable.facts))


# ------------------------------------------------------------------------------------------------
# The parent: one child per group (or one for all, --interleave), then the table.


def parse_groups(args):
  return [parse_group(g) for g in (args.groups.split(",") if args.groups else default_groups())]


def has_gpu():
  return subprocess.run("nvidia-smi -L", shell=True, capture_output=True).returncode == 0


def default_groups():
  groups = ["jax:float32", "torch:fp32"]
  return groups + ["jax:bfloat16", "torch:amp_bf16"] if has_gpu() else groups


def run_child(args, name: str, timeout=None, **extra_env):
  """Runs one group in a fresh interpreter; returns its rows (those finished, on a timeout)."""
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
    output = handle.name
  command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:],
             "--child", name, "--child_output", output,
             "--group_timeout", str(timeout or 0)]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
             **extra_env)
  print(f"--- {name}", flush=True)
  error = ""
  try:
    completed = subprocess.run(command, env=env, timeout=timeout)
    if completed.returncode:
      error = f"child exited with status {completed.returncode}"
  except subprocess.TimeoutExpired:
    error = f"timed out after {timeout:.0f} s"
  with open(output) as f:
    text = f.read()
  os.remove(output)
  rows = json.loads(text) if text else []
  for row in rows:
    row.setdefault("group", name)
  if error:
    print(f"!!! {name}: {error}", flush=True)
  return rows, error


def child_main(args):
  if args.child == "flops":
    results = []

    def record(result):
      results.append(result)
      with open(args.child_output, "w") as f:
        json.dump(results, f)
    count_jax_flops(args, record)
    return
  if args.group_timeout:  # say where a child was when the parent is about to kill it
    faulthandler.dump_traceback_later(max(args.group_timeout - 5, 1), exit=False)
  results = []

  def report(result, update=False):
    if not update:
      results.append(result)
    with open(args.child_output, "w") as f:
      json.dump(results, f)
    if update:
      print_profile(result["profile"])
      return
    print(f"    {result.get('group', args.child)} {result['size']:<14} {result['rate']:10.3f} "
          f"{result['unit']:<8} "
          f"median {result['seconds'] * 1e3:9.2f} ms  (warm-up {result['warmup_s']:.1f} s)",
          flush=True)

  if args.child == INTERLEAVED:
    run_interleaved(args, parse_groups(args), report)
  else:
    run_group(args, parse_group(args.child), report)


def print_profile(profile):
  print(f"      profile, {profile['where']}: wall {profile['wall_s'] * 1e3:.2f} ms/step, busy "
        f"{profile['busy_s'] * 1e3:.2f} ms/step, {profile['ops_per_step']:.0f} ops/step")
  busy = profile["busy_s"] or 1.0
  print("      " + ", ".join(f"{name} {seconds / busy:.0%}"
                              for name, seconds in profile["categories"].items()))
  for name, seconds, count in profile["top"]:
    print(f"        {seconds * 1e3:8.3f} ms  x{count:<5.0f} {name[:90]}")


def format_bytes(n):
  return f"{n / 2**30:.2f} GiB" if n else "-"


def print_table(results, flops, args):
  from esrgan_jax.runtime import flops as flop_counts  # pylint: disable=g-import-not-at-top
  sizes = ", ".join(f"{b}x{p}" for b, p in args.sizes)
  print(f"\nx4 RRDBNet {args.num_block} blocks x {args.num_feat} feat (grow {args.num_grow_ch}); "
        f"train: batch x HR patch {sizes}, D width {args.d_feat}; infer: "
        f"{args.infer_batch} x {args.infer_size}^2 -> {args.infer_size * SCALE}^2; "
        f"median of {args.steps} after {args.warmup} warm-up")
  header = (f"{'row':<24}{'group':<28}{'rate':>12} {'unit':<8}{'ms/step':>10}{'TFLOP/s':>9}"
            f"{'MFU':>18}{'peak mem':>12}{'program':>11}{'compile s':>10}")
  print(header)
  print("-" * len(header))
  names = list(dict.fromkeys(r["size"] for r in results))
  for name in names:
    for r in [r for r in results if r["size"] == name]:
      count = (conv_probe_flops(sized(args, r["batch"], r["patch"])) if r["row"] == "conv"
               else flops.get(name))
      tflops = count / r["seconds"] / 1e12 if count else None
      peaks = flop_counts.peak_tflops(r["device"])
      mfu = "-"
      if tflops and peaks and peaks[0]:
        mfu = f"{tflops / peaks[0]:.1%}"
        if not parse_group(r["group"]).bf16 and peaks[1]:
          mfu += f" ({tflops / peaks[1]:.1%} tf32)"
      compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else f"({r['warmup_s']:.1f})"
      print(f"{name:<24}{r['group']:<28}{r['rate']:12.3f} {r['unit']:<8}"
            f"{r['seconds'] * 1e3:10.2f}{(f'{tflops:.2f}' if tflops else '-'):>9}{mfu:>18}"
            f"{format_bytes(r.get('peak_bytes')):>12}{format_bytes(r.get('program_bytes')):>11}"
            f"{compile_s:>10}")
  jax_groups = sorted({r["group"] for r in results if r["group"].startswith("jax")})
  torch_groups = sorted({r["group"] for r in results if r["group"].startswith("torch")})
  if jax_groups and torch_groups:
    print("\nJAX / PyTorch throughput (> 1: JAX faster)")
    print(f"{'row':<16}{'jax group':<24}" + "".join(f"{g:>26}" for g in torch_groups))
    rate = {(r["size"], r["group"]): r["rate"] for r in results}
    for name in names:
      for jg in jax_groups:
        if (name, jg) in rate:
          cells = [f"{rate[(name, jg)] / rate[(name, tg)]:.2f}x" if (name, tg) in rate else "-"
                   for tg in torch_groups]
          print(f"{name:<16}{jg:<24}" + "".join(f"{c:>26}" for c in cells))
  print_degradation_share(results)
  print("\nTFLOP/s and MFU use XLA's FLOP count of the JAX step for every group of a row; peak "
        "mem: GPU allocator peak (JAX: cumulative per group) or process peak RSS on CPU; "
        "program: XLA's memory analysis of the compiled program; "
        "compile s: JAX lower+compile (PyTorch: all warm-up steps, in brackets).")


def degradation_shares(results):
  """[(size, group, with s, without s, share)] of every realesrgan row with its _nodeg twin."""
  seconds = {(r["row"], r["batch"], r["patch"], r["group"]): r["seconds"] for r in results}
  shares = []
  for (row, batch, patch, group), with_s in seconds.items():
    without_s = seconds.get(("realesrgan_nodeg", batch, patch, group))
    if row == "realesrgan" and without_s:
      shares.append((f"{batch}x{patch}", group, with_s, without_s, (with_s - without_s) / with_s))
  return shares


def print_degradation_share(results):
  shares = degradation_shares(results)
  if shares:
    print("\nReal-ESRGAN step with and without the device-side degradations")
    for size, group, with_s, without_s, share in shares:
      print(f"degradations {size:<10}{group:<28}with {with_s * 1e3:10.2f} ms  without "
            f"{without_s * 1e3:10.2f} ms  share {share:.1%}")


def flops_cache_path(args, name):
  key = (f"{name.replace(':', '_')}_b{args.num_block}_f{args.num_feat}_g{args.num_grow_ch}"
         f"_d{args.d_feat}_i{args.infer_batch}x{args.infer_size}")
  if name.startswith("realesrgan"):
    key += f"_c{args.crop_pad_size}"
  return os.path.join(args.flops_cache, key + ".json")


def count_flops(args):
  """{size name: FLOPs per call} from the cache or a child on the CPU backend; and an error."""
  needed = [size_name(row, a.batch, a.patch) for a, rows in size_plan(args) for row in rows
            if row != "conv"]
  flops = {}
  if args.flops_cache:
    for name in needed:
      path = flops_cache_path(args, name)
      if os.path.exists(path):
        with open(path) as f:
          flops[name] = json.load(f)["flops"]
  if all(name in flops for name in needed):
    if needed:
      progress(f"FLOP counts from {args.flops_cache}")
    return flops, ""
  # Counted on the CPU backend, whatever runs the groups: see count_jax_flops.
  counted, error = run_child(args, "flops", args.group_timeout or None, JAX_PLATFORMS="cpu")
  for r in counted:
    flops[r["size"]] = r["flops"]
    if args.flops_cache:
      os.makedirs(args.flops_cache, exist_ok=True)
      path = flops_cache_path(args, r["size"])
      with open(path + ".tmp", "w") as f:
        json.dump(dict(flops=r["flops"]), f)
      os.replace(path + ".tmp", path)  # parallel runs of one size write the same count
  return flops, error


def report_runs(paths):
  """print_table of several runs' --json files together; 0, or 1 if none could be read."""
  results, flops, sizes, run_args = [], {}, [], None
  for path in paths:
    try:
      with open(path) as f:
        run = json.load(f)
    except (OSError, ValueError) as error:
      print(f"report: cannot read {path}: {error}")
      continue
    run_args = run_args or run["args"]
    results += run["results"]
    flops.update(run["flops"])
    sizes += [tuple(size) for size in run["args"]["sizes"] if tuple(size) not in sizes]
  if not run_args:
    return 1
  print_table(results, flops, argparse.Namespace(**dict(run_args, sizes=sizes)))
  return 0


def decide_dense(paths):
  """Per row and size, :concat against :fused of one precision, from benchmark --json files;
  prints the AUTO_DENSE_BLOCK line to change. Returns the train-step winner or None."""
  results = []
  for path in paths:
    try:
      with open(path) as f:
        results += json.load(f)["results"]
    except (OSError, ValueError, KeyError) as error:
      print(f"dense block decision: cannot read {path}: {error}")
  rates, platforms, devices = {}, set(), set()
  for r in results:
    group = parse_group(r["group"])
    arrangement = [o for o in group.options if o in ("concat", "fused")]
    if group.framework != "jax" or len(arrangement) != 1 or "remat" in group.options:
      continue
    key = (r["size"], group.precision)
    rates.setdefault(key, {})[arrangement[0]] = r["rate"]
    platforms.add(r.get("platform", "?"))
    devices.add(r.get("device", "?"))
  ratios = {}
  for (name, precision), by in sorted(rates.items()):
    if len(by) < 2:
      print(f"dense block {name} {precision}: only {list(by)} measured")
      continue
    ratio = by["fused"] / by["concat"]
    ratios.setdefault(name.split(":")[0], []).append(ratio)
    print(f"dense block {name:<14} {precision:<9} concat {by['concat']:10.3f}  fused "
          f"{by['fused']:10.3f}  fused/concat {ratio:5.2f}x  -> "
          f"{'fused' if ratio > 1 else 'concat'}")
  train = [x for row in ("psnr", "gan") for x in ratios.get(row, [])]
  if not train:
    print("dense block decision: no train row measured both arrangements")
    return None
  geomean = 2 ** (sum(math.log2(x) for x in train) / len(train))
  winner = "fused" if geomean > 1 else "concat"
  summary = ", ".join(f"{row} {min(x):.2f}-{max(x):.2f}x" if len(x) > 1 else f"{row} {x[0]:.2f}x"
                      for row, x in ratios.items())
  platform_name = "/".join(sorted(platforms))
  print(f"dense block winner for the train steps on {platform_name} ({', '.join(sorted(devices))}):"
        f" {winner} (fused/concat geometric mean {geomean:.2f}x; {summary})")
  print(f"line to change in esrgan_jax/models/rrdbnet.py AUTO_DENSE_BLOCK:\n"
        f'    "{platform_name}": "{winner}",  # measured {time.strftime("%Y-%m-%d")}, '
        f"{', '.join(sorted(devices))}, fused/concat: {summary} (benchmarks/gpu_suite.sh)")
  print(f"winner: {winner}")
  return winner


def write_json(args, flops, results, failures):
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(args={k: v for k, v in vars(args).items() if not k.startswith("child")},
                     flops=flops, results=results, failures=failures,
                     degradation_shares=degradation_shares(results)), f, indent=1)


def main():
  args = parse_args()
  if args.child:
    child_main(args)
    return
  sys.path.insert(0, REPO_ROOT)
  if args.decide_dense is not None:
    decide_dense(args.decide_dense)
    return
  if args.report is not None:
    sys.exit(report_runs(args.report))
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()  # in the environment the children inherit, as main.py does
  try:
    groups = parse_groups(args)
  except ValueError as error:
    sys.exit(f"benchmarks/benchmark.py: {error}")
  if args.interleave and has_gpu():
    sys.exit("benchmarks/benchmark.py: --interleave is for a shared CPU; on a GPU each framework "
             "needs the device (and its memory) to itself")
  load = os.getloadavg()
  print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPUs, load "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True)
  results, failures = [], []
  deadline = time.monotonic() + args.total_timeout if args.total_timeout else None
  # On a GPU host the CPU-backend count runs beside the groups (it needs one core, which the
  # GPU's timing does not); on a shared CPU it runs first, not to disturb the timings.
  counting = concurrent.futures.ThreadPoolExecutor(1).submit(count_flops, args)
  if not has_gpu():
    counting.result()
  for child in [INTERLEAVED] if args.interleave else [group.name for group in groups]:
    timeouts = [t for t in (args.group_timeout,
                            deadline and deadline - time.monotonic()) if t]
    if timeouts and min(timeouts) < 5:
      failures.append(f"{child}: not run, --total_timeout reached")
      continue
    rows, error = run_child(args, child, min(timeouts) if timeouts else None)
    results += rows
    if error:
      failures.append(f"{child}: {error}")
    # After every group, so a run cut short keeps what it measured.
    write_json(args, counting.result()[0] if counting.done() else {}, results, failures)
  flops, error = counting.result()
  if error:
    failures.append(f"FLOP count: {error}")
  write_json(args, flops, results, failures)
  devices = sorted({f"{r['group'].split(':')[0]}: {r['device']} ({r['versions']})"
                    for r in results})
  print("\n" + "\n".join(devices))
  load = os.getloadavg()
  print(f"load at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  print_table(results, flops, args)
  for failure in failures:
    print(f"FAILED {failure}")
  if failures:
    sys.exit(1)


if __name__ == "__main__":
  main()
