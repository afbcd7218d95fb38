"""Inference speed of the fast architectures (Compact, SPAN) beside RRDBNet, in JAX and PyTorch.

  python -m benchmarks.fast_models                       # CPU, traiNNer-redux's 1x3x480x640
  python -m benchmarks.fast_models --device cuda         # the same on a GPU
  python -m benchmarks.fast_models --size 120x160        # a smaller input for a quick CPU run
  python -m benchmarks.fast_models --size 16x24 --steps 1 --warmup 1 --json rows.json

From the repository root. One x4 upscale of one random image per call, at traiNNer-redux's
benchmark shape by default (batch 1, 480x640 input, 1920x2560 output), on either device; --size
takes another input HxW. On a 2-core CPU, RRDBNet 23x64 takes about 40 s (JAX) and 80 s (PyTorch)
per 480x640 frame: `--rows compact16,compact32,span48` leaves it out, and a separate RRDBNet run
with `--steps 2 --warmup 0` keeps it to minutes. Frames/s is per input of that size, MP/s output
megapixels per second (the figure that carries over between sizes).

Rows (--rows): rrdb23x64 (RRDBNet, ESRGAN's), compact16 and compact32 (SRVGGNetCompact,
num_feat 64, PReLU), span48 (SPAN, feature_channels 48; JAX runs the folded, deploy=True form).
Variants (--frameworks, default jax,torch; a backend's name names all of its variants):
  jax:float32, jax:bfloat16      esrgan_jax's module through inference/apply.py, as evaluation
                                 and the upscaler run it (Compact on the CPU: with YNNPACK's
                                 convolutions), params float32 (compute dtype only);
  torch:fp32                     reference/'s PyTorch module, eager, eval mode, torch.no_grad;
                                 SPAN's eval form refolds every Conv3XC at each forward, as
                                 spandrel does;
  torch:fp32:prefolded           SPAN only: the same with eval_conv folded once beforehand;
  onnxruntime:fp32               CPU only, asked for by name: the ONNX graph of
                                 `convert --export` (weights/onnx_export.py) in onnxruntime's
                                 CPUExecutionProvider, default threads.
The backends are benchmarks/fast_backends.py's BACKENDS: one builder function each.

Weights: random, drawn by NumPy into the shapes jax.eval_shape gives (no init compile), with
PyTorch's default-init ranges (uniform +-1/sqrt(fan_in); PReLU slopes 0.25): with SPAN's x255
input normalisation, wider weights leave float32 itself off by 0.2% (tests/models/test_span.py).
The torch modules are built with their default init and load the same values. Once per model the
JAX float32 output is checked against every other variant that has a full-precision forward
(all but jax:bfloat16) on the benchmark input: their largest difference, over max(1, the largest
output magnitude), must be under 1e-3 (on CUDA both sides run that check at full float32
precision, not TF32); a failure is printed and the command exits 1.

Timing as benchmarks/benchmark.py: the trainer's XLA flags (esrgan_jax/runtime/xla_flags.py),
`--warmup` untimed calls (JAX compiles before them, compile time reported apart), then `--steps`
calls each synced alone (jax.block_until_ready / torch.cuda.synchronize), median reported; the
variants of one model take turns call by call (common.time_interleaved), so that a shared CPU's
changing load hits them alike. torch keeps its default thread count (printed). On a loaded
shared CPU, wall times measure the load as much as the frameworks (PyTorch's OpenMP threads lose
most when another process takes their core): `taskset -c 0 ... --clock cpu` gives every framework
one thread and times the CPU seconds each call takes instead.
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

import numpy as np

from benchmarks import fast_backends
from benchmarks.common import CLOCKS, SCALE, progress, time_interleaved

MODELS = {  # row -> (label, network, its options)
    "rrdb23x64": ("RRDBNet 23x64", "rrdbnet", dict(num_block=23, num_feat=64, num_grow_ch=32)),
    "compact16": ("Compact 16x64", "srvgg", dict(num_conv=16, num_feat=64, act_type="prelu")),
    "compact32": ("Compact 32x64", "srvgg", dict(num_conv=32, num_feat=64, act_type="prelu")),
    "span48": ("SPAN 48", "span", dict(feature_channels=48)),
}
# --tiny's stand-ins for the rows (label, options): tests time the plumbing, not the networks.
TINY_MODELS = {
    "rrdb23x64": ("RRDBNet 1x8", dict(num_block=1, num_feat=8, num_grow_ch=4)),
    "compact16": ("Compact 2x8", dict(num_conv=2, num_feat=8, act_type="prelu")),
    "compact32": ("Compact 4x8", dict(num_conv=4, num_feat=8, act_type="prelu")),
    "span48": ("SPAN 8", dict(feature_channels=8)),
}
SIZE = (480, 640)  # traiNNer-redux's benchmark input
TOLERANCE = 1e-3
# traiNNer-redux's published RTX 4090 fp16 frames/s at 480x640 -> 1920x2560, for a GPU run.
PUBLISHED_4090_FP16 = {"rrdb23x64": 4.73, "span48": 82.0, "compact16": 227.0}


def model_spec(row, tiny=False):
  """(label, network, options) of a row: MODELS', or with `tiny` its TINY_MODELS stand-in."""
  label, network, options = MODELS[row]
  if tiny:
    label, options = TINY_MODELS[row]
  return label, network, options


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="", help="input HxW (default 480x640, traiNNer-redux's; "
                      "RRDBNet takes about a minute per frame there on a 2-core CPU)")
  parser.add_argument("--steps", type=int, default=5, help="timed calls (median reported)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
  parser.add_argument("--rows", default=",".join(MODELS), help=f"subset of {list(MODELS)}")
  backends = {name: names for name, (names, _) in fast_backends.BACKENDS.items()}
  variants = [v for names in backends.values() for v in names]
  parser.add_argument("--frameworks", default=",".join(fast_backends.DEFAULT_BACKENDS),
                      help=f"subset of {variants}, or a backend's name for all of its variants "
                      f"(default: {', '.join(fast_backends.DEFAULT_BACKENDS)})")
  parser.add_argument("--json", default="", help="also write every measurement to this file")
  parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
  parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                      help="cpu: the process's CPU seconds per call (all its threads, spinning "
                      "ones too), for a loaded shared CPU; with `taskset -c 0` every framework "
                      "runs one thread and its CPU time is its work")
  parser.add_argument("--tiny", action="store_true",
                      help="tiny stand-ins for the rows' networks (TINY_MODELS; tests)")
  args = parser.parse_args(argv)
  args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
  bad = [r for r in args.rows if r not in MODELS]
  if bad or not args.rows:
    parser.error(f"--rows: unknown row(s) {bad}; choose from {list(MODELS)}")
  wanted = [w.strip() for w in args.frameworks.split(",") if w.strip()]
  bad = [w for w in wanted if w not in variants and w not in backends]
  if bad or not wanted:
    parser.error(f"--frameworks: unknown {bad}; choose from {variants}, {', '.join(backends)}")
  expanded = {v for w in wanted for v in backends.get(w, (w,))}
  args.variants = [v for v in variants if v in expanded]
  if args.size:
    match = re.fullmatch(r"(\d+)x(\d+)", args.size.strip().lower())
    if not match or min(int(n) for n in match.groups()) < 1:
      parser.error(f"--size {args.size!r}: expected HxW, e.g. 480x640")
    args.height, args.width = (int(n) for n in match.groups())
  else:
    args.height, args.width = SIZE
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be positive and --warmup not negative")
  if args.clock == "cpu" and args.device != "cpu":
    parser.error("--clock cpu times the host: it is for --device cpu")
  return args


def check_agreement(args, row, built, image):
  """One line per checked variant: jax:float32 against it on the benchmark input; and failures."""
  if fast_backends.REFERENCE not in built:
    return [], []
  expected = built[fast_backends.REFERENCE].forward(image)
  lines, failures = [], []
  for variant, its in built.items():
    if variant == fast_backends.REFERENCE or its.forward is None:
      continue
    actual = its.forward(image)
    difference = float(np.abs(actual.astype(np.float64) - expected).max())
    magnitude = float(np.abs(expected).max())
    error = difference / max(1.0, magnitude)
    line = (f"check {row}: {fast_backends.REFERENCE} against {variant}: max |difference| "
            f"{difference:.3g}, output max |y| {magnitude:.3g}, error {error:.3g} "
            f"(limit {TOLERANCE:g})")
    lines.append(line)
    if not error < TOLERANCE:
      failures.append(line)
  return lines, failures


def measure(args, row, image):
  """The rows of one model (one per variant), its check lines and its failures."""
  import jax  # pylint: disable=g-import-not-at-top
  label, network, options = model_spec(row, args.tiny)
  model = fast_backends.make_model(network, options, image)
  param_count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(model.infer_params))
  built = fast_backends.build_variants(args, model, args.variants)
  lines, failures = check_agreement(args, row, built, image)
  for line in lines:
    print(("FAILED " if line in failures else "") + line, flush=True)
  steps = args.steps
  variants = list(built)
  progress(f"{row}: timing {', '.join(variants)} ({args.warmup} warm-up + {steps} calls each)")
  times, warmup_s = time_interleaved([(built[v].run_once, built[v].sync) for v in variants],
                                     args.warmup, steps, CLOCKS[args.clock])
  output_mp = args.height * SCALE * args.width * SCALE / 1e6
  rows = []
  for variant, its_times, its_warmup in zip(variants, times, warmup_s):
    seconds = statistics.median(its_times)
    rows.append(dict(row=row, model=label, variant=variant, params=param_count,
                     seconds=seconds, frames_per_s=1 / seconds, mp_per_s=output_mp / seconds,
                     times=its_times, warmup_s=its_warmup, steps=steps,
                     size=f"{args.height}x{args.width}", platform=args.device, clock=args.clock,
                     **built[variant].facts))
  return rows, lines, failures


# ------------------------------------------------------------------------------------------------
# The table.


def print_table(rows, clock="wall"):
  if clock == "cpu":
    print("\nTimes are the process's CPU seconds per call (--clock cpu): frames/s and MP/s are per "
          "CPU second.")
  print(f"\n{'model':<15} {'variant':<22} {'params':>9} {'ms/frame':>10} {'frames/s':>9} "
        f"{'MP/s':>8}")
  for r in rows:
    print(f"{r['model']:<15} {r['variant']:<22} {r['params'] / 1e6:8.3f}M "
          f"{r['seconds'] * 1e3:10.1f} {r['frames_per_s']:9.3f} {r['mp_per_s']:8.3f}")
  by_key = {(r["row"], r["variant"]): r for r in rows}
  for row, variant in by_key:  # jax:float32 against every other framework's variant
    jax_row = by_key.get((row, fast_backends.REFERENCE))
    if jax_row and not variant.startswith("jax:"):
      ratio = jax_row["frames_per_s"] / by_key[(row, variant)]["frames_per_s"]
      print(f"{jax_row['model']}: {fast_backends.REFERENCE} / {variant} throughput "
            f"{ratio:.2f}x")


def main(argv=None):
  args = parse_args(argv)
  if args.device == "cpu":
    os.environ["JAX_PLATFORMS"] = "cpu"  # read when JAX makes its first backend
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  from esrgan_jax.runtime import backends  # pylint: disable=g-import-not-at-top
  backends.start_quietly()
  if args.device == "cuda" and jax.default_backend() != "gpu":
    sys.exit(f"benchmarks/fast_models.py: --device cuda, but JAX runs on {jax.default_backend()}")
  load = os.getloadavg()
  size = f"{args.height}x{args.width}"
  print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPUs, load "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"x{SCALE} inference of one {size} image on {args.device}: "
        f"{', '.join(args.variants)}", flush=True)
  image = np.random.default_rng(0).random((1, args.height, args.width, 3), dtype=np.float32)
  results, checks, failures = [], [], []
  for row in args.rows:
    rows, lines, failed = measure(args, row, image)
    results += rows
    checks += lines
    failures += failed
    if args.json:  # after every model, so a run cut short keeps what it measured
      write_json(args, results, checks, failures, load)
  print_table(results, args.clock)
  for facts in sorted({f"{r['variant'].split(':')[0]}: {r['device']} ({r['versions']}"
                       + (f", {r['threads']} threads)" if "threads" in r else ")")
                       for r in results}):
    print(facts)
  if args.device == "cuda":
    print("traiNNer-redux's RTX 4090 fp16 figures at 480x640: " + ", ".join(
        f"{MODELS[r][0]} {fps:g}" for r, fps in PUBLISHED_4090_FP16.items()) + " frames/s")
  end = os.getloadavg()
  print(f"load at the end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
  for failure in failures:
    print(f"FAILED {failure}")
  if failures:
    sys.exit(1)


def write_json(args, results, checks, failures, load):
  with open(args.json, "w") as f:
    json.dump(dict(args=dict(size=f"{args.height}x{args.width}", steps=args.steps,
                             warmup=args.warmup, rows=args.rows, variants=args.variants,
                             device=args.device, clock=args.clock, tiny=args.tiny),
                   load=load, results=results, checks=checks, failures=failures), f, indent=1)


if __name__ == "__main__":
  main()
