"""How much of one PSNR train step is convolution, in JAX and in PyTorch, on this CPU.

  python -m benchmarks.step_convolutions --num_block 4 --batch 4 --patch 128 --steps 8

Takes benchmark.py's size flags and groups (default jax:float32,torch:fp32; one of each) and
prints, per group, the step's wall time and the part of it spent in convolutions, then the
costliest convolutions of each:
- step: benchmark.py's psnr row, both groups in this process with their calls alternating
  (common.time_interleaved), median of --steps;
- JAX convolutions: every conv_general_dilated of the step's jaxpr (each layer's forward pass,
  input gradient and weight gradient), compiled and timed alone with its own shapes and dimension
  numbers (median of 5 calls), summed over the step, less the cost of calling an empty jitted
  function once per convolution. Each is timed with whatever layout copies XLA:CPU puts around
  that convolution;
- PyTorch convolutions: torch.profiler over 3 steps, the self time of every op whose name holds
  "conv" (oneDNN's kernels and the wrappers that call them).
The rest of the step (elementwise work, the L1 loss, Adam, the EMA, layout copies) is the
difference. The two sides run their own dense-block arrangement: JAX config.model.dense_block
(auto: fused on CPU), PyTorch BasicSR's concatenating one.
"""

import os
import statistics
import sys
import time

from benchmarks import benchmark, common, jax_rows
from esrgan_jax.runtime import backends

CONV_REPEATS = 5
PROFILE_STEPS = 3
LISTED = 12  # the costliest convolutions listed per group


def jaxpr_convolutions(jaxpr, found):
  """Appends every conv_general_dilated equation of `jaxpr` and of the jaxprs nested in it."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.extend  # pylint: disable=g-import-not-at-top
  for equation in jaxpr.eqns:
    if equation.primitive is jax.lax.conv_general_dilated_p:
      found.append(equation)
    for value in equation.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          jaxpr_convolutions(sub.jaxpr, found)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          jaxpr_convolutions(sub, found)
  return found


def jax_convolution_kind(equation) -> str:
  """forward (NHWC input, HWIO kernel, as the models write them), input gradient (the output
  gradient convolved with the flipped kernel, whose input and output axes trade places) or
  weight gradient (a conv whose "batch" axis is the input's channel axis)."""
  numbers = equation.params["dimension_numbers"]
  if numbers.lhs_spec[0] != 0:
    return "weight_gradient"
  return "forward" if numbers.rhs_spec == (3, 2, 0, 1) else "input_gradient"


def jax_convolutions(args, group, repeats):
  """The step's distinct convolutions: dicts of kind, shapes, count per step and seconds each."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  jitted, example, _ = jax_rows.jax_row_program(args, group, "psnr", concrete=False)
  equations = jaxpr_convolutions(jitted.trace(*example).jaxpr.jaxpr, [])
  rng = np.random.default_rng(0)
  call_overhead_s, _, _ = common.median_step_seconds(jax.jit(lambda: np.float32(0)),
                                                     jax.block_until_ready, 2, repeats)
  distinct = {}  # identical convolutions (same shapes and parameters) are timed once
  for equation in equations:
    key = (tuple((v.aval.shape, str(v.aval.dtype)) for v in equation.invars),
           repr(sorted(equation.params.items())))
    if key in distinct:
      distinct[key]["count"] += 1
      continue
    operands = [jax.device_put(rng.standard_normal(v.aval.shape).astype(v.aval.dtype))
                for v in equation.invars]
    convolve = jax.jit(lambda lhs, rhs, params=equation.params:
                       jax.lax.conv_general_dilated_p.bind(lhs, rhs, **params))
    seconds, _, _ = common.median_step_seconds(lambda: convolve(*operands),
                                               jax.block_until_ready, 2, repeats)
    distinct[key] = dict(kind=jax_convolution_kind(equation), count=1,
                         seconds=max(seconds - call_overhead_s, 0.0),
                         shapes=[v.aval.shape for v in equation.invars] +
                         [equation.outvars[0].aval.shape])
  return list(distinct.values())


def torch_convolutions(measurable, steps):
  """(the ops named *conv* by input shapes: dicts of kind, shapes, count per step and seconds
  each, seconds per step in all ops), from torch.profiler."""
  import torch  # pylint: disable=g-import-not-at-top
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                              record_shapes=True) as profile:
    for _ in range(steps):
      measurable.sync(measurable.run_once())
  events = profile.key_averages(group_by_input_shape=True)
  convolutions = [dict(kind="backward" if "backward" in e.key.lower() else "forward",
                       count=e.count / steps, seconds=e.self_cpu_time_total / e.count / 1e6,
                       shapes=[tuple(shape) for shape in e.input_shapes[:3] if shape],
                       name=e.key)
                  for e in events if "conv" in e.key.lower() and e.count]
  return convolutions, sum(e.self_cpu_time_total for e in events) / steps / 1e6


def seconds_by_kind(convolutions):
  totals = {}
  for convolution in convolutions:
    kind = convolution["kind"]
    totals[kind] = totals.get(kind, 0.0) + convolution["count"] * convolution["seconds"]
  return totals


def print_costliest(name, convolutions, top):
  print(f"\n{name}: the {top} costliest convolutions (ms per step = count x ms each)")
  ranked = sorted(convolutions, key=lambda c: -c["count"] * c["seconds"])
  for c in ranked[:top]:
    shapes = " ".join("x".join(map(str, shape)) for shape in c["shapes"])
    print(f"  {c['count'] * c['seconds'] * 1e3:8.1f} = {c['count']:4.0f} x "
          f"{c['seconds'] * 1e3:7.2f}  {c.get('name', c['kind']):<28} {shapes}")


def main():
  args = benchmark.parse_args(sys.argv[1:] + ["--rows", "psnr"])
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  if benchmark.has_gpu():
    sys.exit("benchmarks/step_convolutions.py: for the CPU (it runs both frameworks in one "
             "process and reads PyTorch's CPU profile); on a GPU use "
             "python -m benchmarks.benchmark --profile")
  backends.start_quietly()
  groups = benchmark.parse_groups(args)
  frameworks = sorted(g.framework for g in groups)
  if frameworks != ["jax", "torch"]:
    sys.exit("benchmarks/step_convolutions.py: --groups takes one jax and one torch group")
  load = os.getloadavg()
  print(f"{time.strftime('%Y-%m-%d %H:%M')}  load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  (row_of_each_group,) = zip(*(benchmark.measurables(args, g) for g in groups))
  times, _ = common.time_interleaved([(m.run_once, m.sync) for m in row_of_each_group],
                                    args.warmup, args.steps)
  lines, tables = [], []
  for group, measurable, its_times in zip(groups, row_of_each_group, times):
    step_s = statistics.median(its_times)
    if group.framework == "jax":
      convolutions = jax_convolutions(args, group, CONV_REPEATS)
      by_kind = seconds_by_kind(convolutions)
      conv_s = dict(forward=by_kind.get("forward", 0.0),
                    backward=by_kind.get("input_gradient", 0.0) +
                    by_kind.get("weight_gradient", 0.0))
      how = (f"{sum(c['count'] for c in convolutions)} convolutions of the step's jaxpr, each "
             f"timed alone; backward: input gradients {by_kind['input_gradient'] * 1e3:.1f} "
             f"ms, weight gradients {by_kind['weight_gradient'] * 1e3:.1f} ms")
    else:
      convolutions, profiled_s = torch_convolutions(measurable, PROFILE_STEPS)
      conv_s = dict(dict(forward=0.0, backward=0.0), **seconds_by_kind(convolutions))
      how = f"torch.profiler, ops named *conv*, of {profiled_s * 1e3:.1f} ms of profiled ops"
    tables.append((group.name, convolutions))
    conv_total_s = sum(conv_s.values())
    lines.append(f"{group.name:<22}{step_s * 1e3:10.1f}{conv_s['forward'] * 1e3:12.1f}"
                 f"{conv_s['backward'] * 1e3:12.1f}{(step_s - conv_total_s) * 1e3:10.1f}"
                 f"{conv_total_s / step_s:8.0%}   {how}")
  print(f"\nx4 RRDBNet {args.num_block} blocks x {args.num_feat} feat, psnr step at batch "
        f"{args.batch}, HR patch {args.patch}; step: median of {args.steps}, interleaved")
  print(f"{'group':<22}{'step ms':>10}{'conv fwd ms':>12}{'conv bwd ms':>12}{'rest ms':>10}"
        f"{'conv':>8}   how the convolutions were timed")
  print("\n".join(lines))
  for name, convolutions in tables:
    print_costliest(name, convolutions, LISTED)
  load = os.getloadavg()
  print(f"load at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
  main()
