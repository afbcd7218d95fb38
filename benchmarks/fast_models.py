"""Inference speed of the fast architectures (Compact, SPAN) beside RRDBNet, in JAX and PyTorch.

  python -m benchmarks.fast_models                       # CPU, 120x160 input (see --size)
  python -m benchmarks.fast_models --device cuda         # GPU, traiNNer-redux's 1x3x480x640
  python -m benchmarks.fast_models --size 16x24 --steps 1 --warmup 1 --json rows.json

From the repository root. One x4 upscale of one random image per call, at traiNNer-redux's
benchmark shape (batch 1, 480x640 input, 1920x2560 output) on a GPU. On the CPU the default input
is 120x160 (1/16 of the pixels): RRDBNet 23x64 takes minutes per 480x640 frame there; MP/s
(output megapixels per second) is the figure to compare across sizes.

Rows (--rows): rrdb23x64 (RRDBNet, ESRGAN's), compact16 and compact32 (SRVGGNetCompact,
num_feat 64, PReLU), span48 (SPAN, feature_channels 48; JAX runs the folded, deploy=True form).
Variants (--frameworks; "jax" and "torch" name both of theirs):
  jax:float32, jax:bfloat16      esrgan_jax's module, jitted, params float32 (compute dtype only);
  torch:fp32                     reference/'s PyTorch module, eager, eval mode, torch.no_grad;
                                 SPAN's eval form refolds every Conv3XC at each forward, as
                                 spandrel does;
  torch:fp32:prefolded           SPAN only: the same with eval_conv folded once beforehand.

Weights: random, drawn by NumPy into the shapes jax.eval_shape gives (no init compile), with
PyTorch's default-init ranges (uniform +-1/sqrt(fan_in); PReLU slopes 0.25): with SPAN's x255
input normalisation, wider weights leave float32 itself off by 0.2% (tests/models/test_span.py).
The torch modules are built with their default init and load the same values. Once per model the
JAX float32 output is checked against every torch variant's on the benchmark input: their largest
difference, over max(1, the largest output magnitude), must be under 1e-3 (on CUDA both sides run
that check at full float32 precision, not TF32); a failure is printed and the command exits 1.

Timing as benchmarks/benchmark.py: the trainer's XLA flags (esrgan_jax/runtime/xla_flags.py),
`--warmup` untimed calls (JAX compiles before them, compile time reported apart), then `--steps`
calls each synced alone (jax.block_until_ready / torch.cuda.synchronize), median reported; the
variants of one model take turns call by call (common.time_interleaved), so that a shared CPU's
changing load hits them alike. torch keeps its default thread count (printed).
"""

import argparse
import copy
import json
import os
import platform
import re
import statistics
import sys
import time

import numpy as np

from benchmarks.common import SCALE, progress, time_interleaved

MODELS = {  # row -> (label, network, its options)
    "rrdb23x64": ("RRDBNet 23x64", "rrdbnet", dict(num_block=23, num_feat=64, num_grow_ch=32)),
    "compact16": ("Compact 16x64", "srvgg", dict(num_conv=16, num_feat=64, act_type="prelu")),
    "compact32": ("Compact 32x64", "srvgg", dict(num_conv=32, num_feat=64, act_type="prelu")),
    "span48": ("SPAN 48", "span", dict(feature_channels=48)),
}
VARIANTS = ("jax:float32", "jax:bfloat16", "torch:fp32", "torch:fp32:prefolded")
SHORTHANDS = {"jax": VARIANTS[:2], "torch": VARIANTS[2:]}
CPU_SIZE, CUDA_SIZE = (120, 160), (480, 640)  # traiNNer-redux's benchmark input is 480x640
TOLERANCE = 1e-3
PRELU_SLOPE = 0.25  # torch.nn.PReLU's init
# traiNNer-redux's published RTX 4090 fp16 frames/s at 480x640 -> 1920x2560, for a GPU run.
PUBLISHED_4090_FP16 = {"rrdb23x64": 4.73, "span48": 82.0, "compact16": 227.0}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="", help="input HxW; default 120x160 on the CPU "
                      "(RRDBNet is minutes per frame at 480x640 there), 480x640 on CUDA")
  parser.add_argument("--steps", type=int, default=5, help="timed calls (median reported)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
  parser.add_argument("--rows", default=",".join(MODELS), help=f"subset of {list(MODELS)}")
  parser.add_argument("--frameworks", default="jax,torch",
                      help=f"subset of {list(VARIANTS)}, or jax / torch for both of theirs")
  parser.add_argument("--json", default="", help="also write every measurement to this file")
  parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
  args = parser.parse_args(argv)
  args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
  bad = [r for r in args.rows if r not in MODELS]
  if bad or not args.rows:
    parser.error(f"--rows: unknown row(s) {bad}; choose from {list(MODELS)}")
  wanted = [w.strip() for w in args.frameworks.split(",") if w.strip()]
  bad = [w for w in wanted if w not in VARIANTS and w not in SHORTHANDS]
  if bad or not wanted:
    parser.error(f"--frameworks: unknown {bad}; choose from {list(VARIANTS)}, jax, torch")
  expanded = {v for w in wanted for v in SHORTHANDS.get(w, (w,))}
  args.variants = [v for v in VARIANTS if v in expanded]
  if args.size:
    match = re.fullmatch(r"(\d+)x(\d+)", args.size.strip().lower())
    if not match or min(int(n) for n in match.groups()) < 1:
      parser.error(f"--size {args.size!r}: expected HxW, e.g. 480x640")
    args.height, args.width = (int(n) for n in match.groups())
  else:
    args.height, args.width = CUDA_SIZE if args.device == "cuda" else CPU_SIZE
  if args.steps < 1 or args.warmup < 0:
    parser.error("--steps must be positive and --warmup not negative")
  return args


# ------------------------------------------------------------------------------------------------
# Networks and weights.


def jax_module(network, options, dtype):
  from esrgan_jax.models import rrdbnet, span, srvgg  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    return rrdbnet.RRDBNet(scale=SCALE, dtype=dtype, **options)
  if network == "srvgg":
    return srvgg.SRVGGNetCompact(upscale=SCALE, dtype=dtype, **options)
  return span.SPAN(upscale=SCALE, dtype=dtype, **options)


def torch_like_params(abstract, seed=0):
  """NumPy values in `abstract`'s shapes (a params dict), in PyTorch's default-init ranges."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(abstract)
  # A conv's bias takes its kernel's fan-in, as torch.nn.Conv2d's does.
  fan_ins = {path[:-1]: int(np.prod(x.shape[:-1])) for path, x in flat.items()
             if path[-1] == "kernel"}
  values = {}
  for path, x in flat.items():
    if path[-1] == "weight":  # PReLU's slopes
      values[path] = np.full(x.shape, PRELU_SLOPE, np.float32)
    else:
      bound = 1 / np.sqrt(fan_ins[path[:-1]])
      values[path] = rng.uniform(-bound, bound, x.shape).astype(np.float32)
  return traverse_util.unflatten_dict(values)


def torch_state(network, options, params):
  """The JAX params (branch form for SPAN) as the reference module's state dict."""
  import torch  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    from esrgan_jax.weights import generator  # pylint: disable=g-import-not-at-top
    arch = dict(num_in_ch=3, num_out_ch=3, scale=SCALE, **options)
    state = generator.params_to_torch(params, arch)
  else:
    state = {}
    for path, value in traverse_util.flatten_dict(params).items():
      *module, leaf = (re.sub(r"^body_(\d+)$", r"body.\1", name) for name in path)
      value = np.asarray(value)
      state[".".join(module + ["weight" if leaf == "kernel" else leaf])] = (
          value.transpose(3, 2, 0, 1) if value.ndim == 4 else value)
  return {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in state.items()}


def torch_module(network, options, params):
  from reference import torch_models, torch_span, torch_srvgg  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    module = torch_models.RRDBNet(scale=SCALE, **options)
  elif network == "srvgg":
    module = torch_srvgg.SRVGGNetCompact(upscale=SCALE, **options)
  else:
    module = torch_span.SPAN(upscale=SCALE, **options)
  missing, unexpected = module.load_state_dict(torch_state(network, options, params), strict=False)
  # SPAN's eval_conv is refolded from the branches at every eval forward.
  if unexpected or [k for k in missing if ".eval_conv." not in k]:
    raise RuntimeError(f"{network}: weights do not fit the torch module: missing {missing}, "
                       f"unexpected {unexpected}")
  return module.eval()


def prefolded(module):
  """A copy of a torch SPAN with each Conv3XC replaced by its eval_conv, folded once, here."""
  from reference import torch_span  # pylint: disable=g-import-not-at-top
  module = copy.deepcopy(module)
  for parent in list(module.modules()):
    for name, child in list(parent.named_children()):
      if isinstance(child, torch_span.Conv3XC):
        child.update_params()
        setattr(parent, name, child.eval_conv)
  return module


# ------------------------------------------------------------------------------------------------
# Building, checking and timing one model.


def build_variants(args, row, image):
  """({variant: (run_once, sync, facts, module)}, inference params, their count, JAX input)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from esrgan_jax.models import span  # pylint: disable=g-import-not-at-top
  _, network, options = MODELS[row]
  abstract = jax.eval_shape(jax_module(network, options, jnp.float32).init,
                            jax.random.key(0), jax.ShapeDtypeStruct(image.shape, jnp.float32))
  params = torch_like_params(abstract["params"])
  # SPAN infers in its folded form; torch gets the branches and folds them itself.
  infer_params = span.fold(params) if network == "span" else params
  infer_params = jax.device_put(jax.tree_util.tree_map(np.asarray, infer_params))
  param_count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(infer_params))
  built = {}
  x_jax = jax.device_put(image)
  for variant in [v for v in args.variants if v.startswith("jax")]:
    dtype = jnp.dtype(variant.split(":")[1])
    jax_options = dict(options, deploy=True) if network == "span" else options
    module = jax_module(network, jax_options, dtype)
    start = time.perf_counter()
    compiled = jax.jit(lambda p, x, module=module: module.apply({"params": p}, x)).lower(
        infer_params, x_jax).compile()
    compile_s = time.perf_counter() - start
    progress(f"{row} {variant}: compiled in {compile_s:.1f} s")
    built[variant] = (lambda c=compiled: c(infer_params, x_jax), jax.block_until_ready,
                      dict(compile_s=compile_s, versions=f"jax {jax.__version__}",
                           device=jax.devices()[0].device_kind), module)
  torch_variants = [v for v in args.variants if v.startswith("torch")
                    and (network == "span" or not v.endswith("prefolded"))]
  if torch_variants:
    import torch  # pylint: disable=g-import-not-at-top
    cuda = args.device == "cuda"
    torch.backends.cudnn.benchmark = True  # as BasicSR, and benchmarks/torch_rows.py
    device = torch.device(args.device)
    reference = torch_module(network, options, params).to(device)
    x_torch = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).to(device)
    facts = dict(versions=f"torch {torch.__version__}", threads=torch.get_num_threads(),
                 device=torch.cuda.get_device_name() if cuda else platform.processor() or "cpu")
    for variant in torch_variants:
      module = prefolded(reference) if variant.endswith("prefolded") else reference

      def run_once(module=module):
        with torch.no_grad():
          return module(x_torch)

      sync = (lambda _: torch.cuda.synchronize()) if cuda else (lambda _: None)
      built[variant] = (run_once, sync, facts, module)
  return built, infer_params, param_count, x_jax


def check_agreement(args, row, built, infer_params, x_jax):
  """One line per torch variant: JAX float32 against it on the benchmark input; and failures."""
  if "jax:float32" not in built:
    return [], []
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  if args.device == "cpu":
    expected = np.asarray(built["jax:float32"][0]())
  else:  # a second program, at full float32 precision rather than TF32
    module = built["jax:float32"][3]
    with jax.default_matmul_precision("highest"):
      expected = np.asarray(jax.jit(lambda p, x: module.apply({"params": p}, x))(infer_params,
                                                                                 x_jax))
  lines, failures = [], []
  for variant in [v for v in built if v.startswith("torch")]:
    allow_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
      with torch.no_grad():
        actual = built[variant][3](torch.from_numpy(np.ascontiguousarray(
            np.asarray(x_jax).transpose(0, 3, 1, 2))).to(args.device))
    finally:
      torch.backends.cudnn.allow_tf32 = allow_tf32
    actual = actual.float().cpu().numpy().transpose(0, 2, 3, 1)
    difference = float(np.abs(actual.astype(np.float64) - expected).max())
    magnitude = float(np.abs(expected).max())
    error = difference / max(1.0, magnitude)
    line = (f"check {row}: jax:float32 against {variant}: max |difference| {difference:.3g}, "
            f"output max |y| {magnitude:.3g}, error {error:.3g} (limit {TOLERANCE:g})")
    lines.append(line)
    if not error < TOLERANCE:
      failures.append(line)
  return lines, failures


def measure(args, row, image):
  """The rows of one model (one per variant), its check lines and its failures."""
  built, infer_params, param_count, x_jax = build_variants(args, row, image)
  lines, failures = check_agreement(args, row, built, infer_params, x_jax)
  for line in lines:
    print(("FAILED " if line in failures else "") + line, flush=True)
  steps = args.steps
  variants = list(built)
  progress(f"{row}: timing {', '.join(variants)} ({args.warmup} warm-up + {steps} calls each)")
  times, warmup_s = time_interleaved([built[v][:2] for v in variants], args.warmup, steps)
  output_mp = args.height * SCALE * args.width * SCALE / 1e6
  rows = []
  for variant, its_times, its_warmup in zip(variants, times, warmup_s):
    seconds = statistics.median(its_times)
    rows.append(dict(row=row, model=MODELS[row][0], variant=variant, params=param_count,
                     seconds=seconds, frames_per_s=1 / seconds, mp_per_s=output_mp / seconds,
                     times=its_times, warmup_s=its_warmup, steps=steps,
                     size=f"{args.height}x{args.width}", platform=args.device,
                     **built[variant][2]))
  return rows, lines, failures


# ------------------------------------------------------------------------------------------------
# The table.


def print_table(rows):
  print(f"\n{'model':<15} {'variant':<22} {'params':>9} {'ms/frame':>10} {'frames/s':>9} "
        f"{'MP/s':>8}")
  for r in rows:
    print(f"{r['model']:<15} {r['variant']:<22} {r['params'] / 1e6:8.3f}M "
          f"{r['seconds'] * 1e3:10.1f} {r['frames_per_s']:9.3f} {r['mp_per_s']:8.3f}")
  by_key = {(r["row"], r["variant"]): r for r in rows}
  for row in dict.fromkeys(r["row"] for r in rows):
    jax_row = by_key.get((row, "jax:float32"))
    for variant in ("torch:fp32", "torch:fp32:prefolded"):
      if jax_row and (row, variant) in by_key:
        ratio = jax_row["frames_per_s"] / by_key[(row, variant)]["frames_per_s"]
        print(f"{MODELS[row][0]}: jax:float32 / {variant} throughput {ratio:.2f}x")


def main(argv=None):
  args = parse_args(argv)
  if args.device == "cpu":
    os.environ["JAX_PLATFORMS"] = "cpu"  # read when JAX makes its first backend
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  if args.device == "cuda" and jax.default_backend() != "gpu":
    sys.exit(f"benchmarks/fast_models.py: --device cuda, but JAX runs on {jax.default_backend()}")
  load = os.getloadavg()
  size = f"{args.height}x{args.width}"
  note = " (the CPU default: 1/16 of 480x640's pixels; compare MP/s)" if (
      args.device == "cpu" and (args.height, args.width) == CPU_SIZE) else ""
  print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPUs, load "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"x{SCALE} inference of one {size} image{note} on {args.device}: "
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
  print_table(results)
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
                             device=args.device),
                   load=load, results=results, checks=checks, failures=failures), f, indent=1)


if __name__ == "__main__":
  main()
