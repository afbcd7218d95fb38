"""The tables of benchmarks/benchmark.py: one run's or several runs' rows with their TFLOP/s, MFU
and JAX / PyTorch ratios (--report), the Real-ESRGAN degradations' share, a child's profile, and
the dense-block decision (--decide_dense)."""

import argparse
import json
import math
import time

from benchmarks.common import LDL_ROWS, SCALE, conv_probe_flops, model_label, parse_group, sized


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
  rrdbnet = getattr(args, "arch", "rrdbnet") == "rrdbnet"  # the others: grad and psnr rows only
  print(f"\nx4 {model_label(args)}; train: batch x HR patch {sizes}"
        + (f", D width {args.d_feat}; infer: {args.infer_batch} x {args.infer_size}^2 -> "
           f"{args.infer_size * SCALE}^2" if rrdbnet else "")
        + f"; median of {args.steps} after {args.warmup} warm-up"
        + ("; times: the process's CPU seconds (--clock cpu)"
           if getattr(args, "clock", "wall") == "cpu" else ""))
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
  print_ldl_cost(results)
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



def ldl_costs(results):
  """[(row, size, group, with s, without s, cost)] of every LDL row measured with its twin."""
  seconds = {(r["row"], r["batch"], r["patch"], r["group"]): r["seconds"] for r in results}
  costs = []
  for (row, batch, patch, group), with_s in seconds.items():
    without_s = seconds.get((LDL_ROWS.get(row), batch, patch, group))
    if without_s:
      costs.append((row, f"{batch}x{patch}", group, with_s, without_s,
                    (with_s - without_s) / without_s))
  return costs


def print_ldl_cost(results):
  costs = ldl_costs(results)
  if costs:
    print("\nLDL's artifacts term (the EMA generator's forward pass and the map) per step")
    for row, size, group, with_s, without_s, cost in costs:
      print(f"{row:<16}{size:<10}{group:<28}with {with_s * 1e3:10.2f} ms  without "
            f"{without_s * 1e3:10.2f} ms  cost {cost:+.1%}")


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
                     degradation_shares=degradation_shares(results),
                     ldl_costs=ldl_costs(results)), f, indent=1)
