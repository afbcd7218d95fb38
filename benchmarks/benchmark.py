"""Speed of ESRGAN training and inference: esrgan_jax against the PyTorch reference, one command.

  python -m benchmarks.benchmark                      # full size, on a GPU (RESULTS.md)
  python -m benchmarks.benchmark --num_block 2 --num_feat 32 --d_feat 32 --batch 4 \
      --infer_size 64 --steps 5 --warmup 2 --rows psnr,gan,infer,conv --profile   # small CPU
  python -m benchmarks.benchmark --arch compact --rows psnr --interleave   # Compact 32, 16x128

From the repository root. The JAX rows are in jax_rows.py, the PyTorch rows in torch_rows.py,
what they share in common.py, the tables and the dense-block decision in report.py.

Generator (--arch): rrdbnet (--num_block, --num_feat, --num_grow_ch), or one of the fast
architectures, compact (SRVGGNetCompact with PReLU: --num_conv, --num_feat) or span (SPAN:
--feature_channels), which take the grad and psnr rows: configs/esrgan_psnr.py's L1 step with
config.model.arch set, against the same reference/ module under torch.optim.Adam (SPAN in its
branch form on both sides). Their inference is benchmarks/fast_models.py's.

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
  gan_ldl, realesrgan_ldl  the gan and realesrgan_nodeg steps with LDL's artifacts term
         (config.loss.ldl_weight 1.0, as configs/esrgan_ldl.py and realesrgan_x4plus_ldl.py):
         the EMA generator's extra forward pass and the artifact map. JAX only; with its twin the
         table ends with LDL's cost per step, (with - without) / without;
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
state_initializer's but values drawn by NumPy (see filled_on_host: XLA takes minutes to
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
import faulthandler
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import (ARCHS, CLOCKS, FAST_ARCH_ROWS, GAN_PATCHES, REALESRGAN_ROWS, ROWS,
                               SCALE, VGG_D_ROWS, median_step_seconds, parse_group, progress,
                               row_result, size_name, size_plan, time_interleaved)
from benchmarks.jax_rows import count_jax_flops, jax_measurables
from benchmarks.report import (decide_dense, print_profile, print_table, report_runs,
                               write_json)
from benchmarks.torch_rows import torch_measurables

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERLEAVED = "interleaved"  # the child that runs every group (--interleave)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", choices=tuple(ARCHS), default="rrdbnet",
                      help=f"the generator: RRDBNet, Compact (SRVGGNetCompact, PReLU) or SPAN; "
                      f"compact and span take the rows {','.join(FAST_ARCH_ROWS)}")
  parser.add_argument("--num_conv", type=int, default=32, help="compact: body convs")
  parser.add_argument("--feature_channels", type=int, default=48, help="span: feature width")
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
  parser.add_argument("--rows", default="", help=f"subset of {ROWS}; default psnr,gan,infer "
                      "(--arch compact or span: psnr)")
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
  parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="cpu: the process's "
                      "CPU seconds per step, for a loaded shared CPU (with taskset -c 0: one "
                      "thread per framework)")
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
  rows = args.rows or ("psnr,gan,infer" if args.arch == "rrdbnet" else "psnr")
  args.rows = [r.strip() for r in rows.split(",") if r.strip()]
  bad = [r for r in args.rows if r not in ROWS]
  if bad:
    parser.error(f"--rows: unknown row(s) {bad}; choose from {ROWS}")
  bad = [r for r in args.rows if r not in FAST_ARCH_ROWS]
  if args.arch != "rrdbnet" and bad:
    parser.error(f"--rows: --arch {args.arch} takes {list(FAST_ARCH_ROWS)}, not {bad}")
  try:
    args.sizes = [tuple(int(n) for n in size.lower().split("x"))
                  for size in args.sizes.split(",") if size.strip()]
  except ValueError:
    parser.error(f"--sizes {args.sizes!r}: expected BATCHxPATCH[,BATCHxPATCH...], e.g. 32x128")
  if any(len(size) != 2 for size in args.sizes):
    parser.error(f"--sizes: expected BATCHxPATCH pairs, got {args.sizes}")
  args.sizes = args.sizes or [(args.batch, args.patch)]
  args.batch, args.patch = args.sizes[0]
  if any(r in VGG_D_ROWS for r in args.rows) and not any(
      patch in GAN_PATCHES for _, patch in args.sizes):
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
  if min(args.steps, args.batch, args.num_block, args.num_feat, args.num_conv,
         args.feature_channels, args.infer_size, args.compile_threads) < 1:
    parser.error("--steps, --batch, --num_block, --num_feat, --num_conv, --feature_channels, "
                 "--infer_size and --compile_threads must be positive")
  return args


def measurables(args, group):
  return (jax_measurables if group.framework == "jax" else torch_measurables)(args, group)


def run_group(args, group, report):
  for measurable in measurables(args, group):
    seconds, times, warmup_s = median_step_seconds(measurable.run_once, measurable.sync,
                                                   args.warmup, args.steps, CLOCKS[args.clock])
    result = row_result(measurable.row, seconds, times, warmup_s, args=measurable.args,
                        batch=measurable.batch, peak_bytes=measurable.peak_bytes(),
                        clock=args.clock, **measurable.facts)
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
                                       args.warmup, args.steps, CLOCKS[args.clock])
    for (group, measurable), its_times, its_warmup_s in zip(pairs, times, warmup_s):
      report(row_result(measurable.row, statistics.median(its_times), its_times, its_warmup_s,
                        args=measurable.args, batch=measurable.batch, group=group.name,
                        clock=args.clock, **measurable.facts))


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
  command = [sys.executable, "-m", "benchmarks.benchmark", *sys.argv[1:],
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


def flops_cache_path(args, name):
  key = (f"{name.replace(':', '_')}_b{args.num_block}_f{args.num_feat}_g{args.num_grow_ch}"
         f"_d{args.d_feat}_i{args.infer_batch}x{args.infer_size}")
  if args.arch != "rrdbnet":  # RRDBNet's keys stay as they were
    key += f"_{args.arch}_n{args.num_conv}_c{args.feature_channels}"
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


def main():
  args = parse_args()
  if args.child:
    child_main(args)
    return
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
