"""The JAX rows of benchmarks/benchmark.py: esrgan_jax's own programs at the benchmark's sizes,
built and compiled for timing, traced for --profile, and lowered for XLA's FLOP count."""

import concurrent.futures
import functools
import glob
import os
import platform
import tempfile
import time

from benchmarks.common import (ARCHS, LDL_ROWS, REALESRGAN_ROWS, SCALE, TRAIN_ROWS, Group,
                               Measurable, conv_probe_shape, peak_rss_bytes, progress, size_name,
                               size_plan)


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



def jax_config(args, group, stage):
  from configs import esrgan, esrgan_psnr, realesrgan_x4plus  # pylint: disable=g-import-not-at-top
  modules = {"gan": esrgan, "psnr": esrgan_psnr, "realesrgan": realesrgan_x4plus}
  config = modules[stage].get_config()
  config.model.update(arch=ARCHS[args.arch], num_feat=args.num_feat, num_block=args.num_block,
                      num_grow_ch=args.num_grow_ch, remat_blocks="remat" in group.options,
                      num_conv=args.num_conv, feature_channels=args.feature_channels)
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



def jax_measurables(args, group):
  """Builds and compiles the requested rows of a JAX group one at a time, as they are timed."""
  import jax  # pylint: disable=g-import-not-at-top
  from esrgan_jax.runtime import backends  # pylint: disable=g-import-not-at-top

  backends.start_quietly()
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
  from esrgan_jax.training.state import build_generator, build_networks, state_initializer
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
  config = jax_config(args, group, "realesrgan" if row in REALESRGAN_ROWS
                      else LDL_ROWS.get(row, row))
  if row in LDL_ROWS:
    config.loss.ldl_weight = 1.0  # the LDL configs' weight; the cost does not depend on it
  networks = build_networks(config)
  state = realise(jax.eval_shape(
      state_initializer(networks, config), keys[2]))
  batch = {"hr": random_array(keys[0], (args.batch, patch, patch, 3)),
           "lr": random_array(keys[1], (args.batch, lr_patch, lr_patch, 3))}
  train_step = steps.make_train_step(networks, config)
  if row == "realesrgan":
    # GT squares on 8-bit levels, as the host pipeline hands them over.
    side = args.crop_pad_size
    batch = {"hr": random_array(keys[0], (args.batch, side, side, 3), jnp.uint8, scale=255.0)}
    train_step = realworld_batch.with_degradations(train_step, config)
  elif row in ("realesrgan_nodeg", "realesrgan_ldl"):
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
