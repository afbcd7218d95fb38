"""What benchmarks/benchmark.py's JAX rows, PyTorch rows, children and report share: the rows and
groups, the sizes, the timing of a row's calls and the record of its result."""

import copy
import dataclasses
import resource
import statistics
import time
from typing import Any

# Run in this order inside a child.
ROWS = ("infer", "grad", "psnr", "gan", "gan_ldl", "realesrgan", "realesrgan_nodeg",
        "realesrgan_ldl", "conv")
REALESRGAN_ROWS = ("realesrgan", "realesrgan_nodeg", "realesrgan_ldl")
VGG_D_ROWS = ("gan", "gan_ldl")  # ESRGAN's VGG-style discriminator: 128 or 256 px patches
# A row with LDL's artifacts term (config.loss.ldl_weight 1.0) -> the same step without it.
LDL_ROWS = {"gan_ldl": "gan", "realesrgan_ldl": "realesrgan_nodeg"}
JAX_ONLY_ROWS = REALESRGAN_ROWS + ("gan_ldl",)
TRAIN_ROWS = ("psnr",) + VGG_D_ROWS + REALESRGAN_ROWS  # the state is donated from step to step
JAX_PRECISIONS = ("float32", "bfloat16")
TORCH_PRECISIONS = ("fp32", "amp_bf16")
OPTIONS = {"jax": ("remat", "concat", "fused"), "torch": ("compile", "channels_last")}
SCALE = 4
# How a call is timed: wall time, or the process's CPU seconds (all its threads) for a loaded
# shared CPU, where wall times measure the load as much as the frameworks.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
GAN_PATCHES = (128, 256)  # what BasicSR's VGG-style discriminator takes
# --arch -> config.model.arch. The fast architectures take the train rows of stage 1 only: no
# dense block to probe (conv), and their inference is benchmarks/fast_models.py's (SPAN's in the
# folded form, which the infer row here, built as the trainer builds G, would not run).
ARCHS = {"rrdbnet": "rrdbnet", "compact": "srvgg_compact", "span": "span"}
FAST_ARCH_ROWS = ("grad", "psnr")


def model_label(args):
  """The generator the rows ran, for the table's title."""
  arch = getattr(args, "arch", "rrdbnet")  # --json files written before --arch: RRDBNet's
  if arch == "compact":
    return f"Compact {args.num_conv} convs x {args.num_feat} feat (PReLU)"
  if arch == "span":
    return f"SPAN {args.feature_channels}"
  return f"RRDBNet {args.num_block} blocks x {args.num_feat} feat (grow {args.num_grow_ch})"


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
           [r for r in rows if (i == 0 or r != "infer")
            and (r not in VGG_D_ROWS or patch in GAN_PATCHES)])
          for i, (batch, patch) in enumerate(args.sizes)]


def size_name(row, batch, patch):
  return row if row == "infer" else f"{row}:{batch}x{patch}"



def time_interleaved(calls, warmup: int, steps: int, clock=time.perf_counter):
  """`calls`: (run_once, sync) pairs. Per pair, the times of `steps` calls, each synced alone and
  taken in turn with the other pairs' calls, and the seconds its `warmup` untimed calls took.
  `clock`: wall time, or e.g. time.process_time for the process's CPU seconds."""
  warmup_s = []
  for run_once, sync in calls:
    start = clock()
    for _ in range(warmup):
      sync(run_once())
    warmup_s.append(clock() - start)
  times = [[] for _ in calls]
  for _ in range(steps):
    for (run_once, sync), its_times in zip(calls, times):
      start = clock()
      sync(run_once())
      its_times.append(clock() - start)
  return times, warmup_s


def median_step_seconds(run_once, sync, warmup: int, steps: int, clock=time.perf_counter):
  """Median time of `steps` calls, each synced alone, after `warmup` untimed calls."""
  (times,), (warmup_s,) = time_interleaved([(run_once, sync)], warmup, steps, clock)
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



def progress(message):
  print(f"    [{time.strftime('%H:%M:%S')}] {message}", flush=True)



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
