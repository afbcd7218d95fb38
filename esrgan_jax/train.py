"""The training loop of both ESRGAN stages: state, mesh, input, periodic actions. No numerics."""

import functools
import signal
import threading
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from esrgan_jax import checkpoints, config_checks, evaluate, generator_io, parallel, steps
from esrgan_jax import vgg19_weights
from esrgan_jax.data import pipeline
from esrgan_jax.train_state import TrainState, build_networks, init_train_state

# Peak dense bf16 FLOP/s per device, for the MFU estimate (vendor figures).
PEAK_FLOPS = {
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
}


class NonFiniteLossError(RuntimeError):
  """Training produced NaN/Inf; the message names the step and the last good checkpoint."""


class _StopRequest:
  """Turns SIGTERM (preemption) into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    if threading.current_thread() is threading.main_thread():
      signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
    self.requested = True


def peak_flops_per_device() -> Optional[float]:
  kind = jax.devices()[0].device_kind
  return next((flops for name, flops in PEAK_FLOPS.items() if kind.startswith(name)), None)


def generator_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {"arch": {f: int(config.model[f]) for f in generator_io.ARCH_FIELDS},
          "stage": config.stage}


def initial_generator(config: ml_collections.ConfigDict, state: TrainState) -> TrainState:
  """Stage 2 starts G from stage 1's generator and the EMA copy from stage 1's EMA."""
  if not config.get("generator_init"):
    if config.stage == "gan":
      logging.warning("config.generator_init is empty: the GAN stage starts from a random "
                      "generator instead of a PSNR-trained one.")
    return state
  source = config.generator_init
  ema_params, arch = generator_io.load_generator(source, which="generator_ema")
  expected = generator_meta(config)["arch"]
  if arch != expected:
    raise generator_io.CheckpointError(f"{source}: generator architecture {arch} does not match "
                                       f"config.model {expected}")
  if generator_io.is_generator_checkpoint(source):
    params = ema_params  # a single exported generator serves as both
  else:
    params, _ = generator_io.load_generator(source, which="generator")
  as_state = lambda tree, like: jax.tree.map(lambda x, y: jax.device_put(x, y.sharding), tree,
                                             like)
  logging.info("Generator initialised from %s", source)
  return state.replace(generator=as_state(params, state.generator),
                       generator_ema=as_state(ema_params, state.generator_ema))


def load_vgg(config: ml_collections.ConfigDict, state: TrainState) -> TrainState:
  if state.vgg is None:
    return state
  if not config.loss.vgg19_weights:
    logging.warning("config.loss.vgg19_weights is empty: the perceptual loss uses a randomly "
                    "initialised VGG19. Convert torchvision's ImageNet VGG19 with `python -m "
                    "esrgan_jax.convert --vgg19` for real training.")
    return state
  params = vgg19_weights.load_vgg19_params(config.loss.vgg19_weights,
                                           layers=tuple(config.loss.perceptual_layers))
  return state.replace(vgg=jax.tree.map(lambda x, y: jax.device_put(np.asarray(x), y.sharding),
                                        params, state.vgg))


def check_finite(step: int, metrics: dict[str, float], manager) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    last = manager.latest_step()
    where = (f"the last good checkpoint is step {last} in {manager.directory}" if last is not None
             else "no checkpoint was written yet")
    raise NonFiniteLossError(f"non-finite loss at step {step}: {bad}; stopping, {where}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  config_checks.validate(config, jax.device_count())
  is_chief = jax.process_index() == 0
  mesh = parallel.create_mesh()
  networks = build_networks(config)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))

  init_fn = functools.partial(init_train_state, networks, config)
  abstract_state = jax.eval_shape(init_fn, init_rng)
  state_sharding = parallel.state_shardings(abstract_state, mesh, config.train.fsdp)
  state = jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
  state = load_vgg(config, state)

  manager = checkpoints.create_manager(workdir, config.train.keep_checkpoints)
  if manager.latest_step() is not None:
    state = checkpoints.restore(manager, state)
    logging.info("Resumed from step %d in %s", manager.latest_step(), manager.directory)
  else:
    state = initial_generator(config, state)
  start_step = int(jax.device_get(state.step))

  batch_sharding = parallel.batch_sharding(mesh)
  train_step = jax.jit(
      steps.make_train_step(networks, config),
      in_shardings=(state_sharding, batch_sharding, parallel.replicated(mesh)),
      out_shardings=(state_sharding, parallel.replicated(mesh)),
      donate_argnums=0)
  batches = pipeline.prefetch_to_mesh(
      pipeline.create_train_iterator(config.data, scale=config.model.scale,
                                     global_batch_size=config.train.batch_size, seed=config.seed,
                                     start_step=start_step),
      batch_sharding)
  eval_sets = pipeline.create_eval_sets(config.data, scale=config.model.scale)

  writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
  writer.write_hparams(_flat_hparams(config))
  num_steps = config.train.num_steps
  hooks = [periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)]
  if is_chief and config.train.profile_steps > 0:
    hooks.append(periodic_actions.Profile(num_profile_steps=config.train.profile_steps,
                                          logdir=workdir))
  loop = _Loop(config, workdir, manager, writer, train_step, eval_sets, networks)
  return loop.run(state, batches, step_rng, start_step, hooks)


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = {}
  def visit(prefix, node):
    for key, value in node.items():
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        visit(f"{prefix}{key}.", value)
      else:
        flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
  visit("", config)
  return flat


class _Loop:
  """The step loop and its periodic actions; owns the one-step-late NaN check."""

  def __init__(self, config, workdir, manager, writer, train_step, eval_sets, networks):
    self.config = config
    self.workdir = workdir
    self.manager = manager
    self.writer = writer
    self.train_step = train_step
    self.eval_sets = eval_sets
    self.networks = networks
    self.meta = generator_meta(config)

  def run(self, state, batches, step_rng, start_step, hooks):
    """Trains to num_steps; any crash but a non-finite loss first saves the last good state."""
    self.state, self.saved_step, self.last_metrics = state, start_step, {}
    try:
      self._steps(batches, step_rng, start_step, hooks)
    except NonFiniteLossError:
      raise
    except BaseException:
      self._save_after_crash()
      raise
    finally:
      self.manager.wait_until_finished()
      self.writer.flush()
    return self.state

  def _steps(self, batches, step_rng, start_step, hooks):
    train_config = self.config.train
    stop = _StopRequest()
    pending = None  # (step number, device metrics) of the last step, checked one step late
    interval_metrics = []
    compiled, timer = None, None
    for step in range(start_step, train_config.num_steps):
      batch = next(batches)
      rng = jax.random.fold_in(step_rng, step)
      if compiled is None:
        compiled = self.train_step.lower(self.state, batch, rng).compile()
        flops = _flops_per_step(compiled)
        logging.info("Compiled the %s step: %s FLOPs per step per device.", self.config.stage,
                     f"{flops:.3e}" if flops else "unknown")
        timer = _Throughput(train_config.batch_size, flops)
      self.state, metrics = compiled(self.state, batch, rng)
      self.last_metrics = metrics
      done = step + 1
      if pending is not None:
        interval_metrics.append(self._checked(*pending))
      pending = (done, metrics)
      for hook in hooks:
        hook(done)
      is_last = done == train_config.num_steps
      if done % train_config.log_every_steps == 0 or is_last:
        interval_metrics.append(self._checked(*pending))
        pending = None
        self._write_train_metrics(done, interval_metrics, timer)
        interval_metrics = []
      eval_metrics = None
      if done % train_config.eval_every_steps == 0 or is_last:
        eval_metrics = self._evaluate(done, self.state, write_files=is_last)
      preempted = stop.requested or self.manager.reached_preemption(done)
      if done % train_config.checkpoint_every_steps == 0 or is_last or preempted:
        if pending is not None:
          interval_metrics.append(self._checked(*pending))
          pending = None
        checkpoints.save(self.manager, self.state, self.meta, eval_metrics)
        self.saved_step = done
      if preempted:
        logging.warning("Stopped at step %d after saving a checkpoint.", done)
        break

  def _save_after_crash(self):
    """Saves the state of the last completed step, unless that step is already saved."""
    try:
      step = int(jax.device_get(self.state.step))
      if step > self.saved_step:
        values = {k: float(v) for k, v in
                  jax.device_get(self.last_metrics).items()}
        if all(np.isfinite(v) for v in values.values()):
          checkpoints.save(self.manager, self.state, self.meta)
          logging.warning("Training stopped by an error: saved step %d first.", step)
    except Exception as error:  # the state may have been donated to the failed step
      logging.error("Could not save a checkpoint after the error: %s", error)

  def _checked(self, step: int, device_metrics) -> dict[str, float]:
    values = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    check_finite(step, values, self.manager)
    return values

  def _write_train_metrics(self, step, interval_metrics, timer):
    means = {f"train/{k}": float(np.mean([m[k] for m in interval_metrics]))
             for k in interval_metrics[0]}
    means.update(timer.update(step))
    self.writer.write_scalars(step, means)

  def _evaluate(self, step, state, write_files: bool) -> dict[str, float]:
    """Evaluates the EMA generator; the final one also writes WORKDIR/eval (JSON, pictures)."""
    generate = evaluate.make_generate_fn(self.networks.generator, state.generator_ema)
    results = evaluate.evaluate_sets(generate, self.eval_sets, self.config.model.scale,
                                     self.config.eval)
    self.writer.write_scalars(step, evaluate.scalar_summaries(results))
    evaluate.write_comparison_images(self.writer, step, results)
    logging.info("Step %d evaluation:\n%s", step, evaluate.format_table(results))
    if write_files and jax.process_index() == 0:
      evaluate.write_results(results, self.workdir, source=f"training step {step} (EMA)",
                             step=step)
    return {checkpoints.BEST_METRIC: evaluate.headline_psnr(results)}


def _flops_per_step(compiled) -> Optional[float]:
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # not every backend implements cost analysis
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis["flops"]) if analysis and "flops" in analysis else None


class _Throughput:
  """images/s, achieved FLOP/s and MFU over each logging interval."""

  def __init__(self, global_batch_size: int, flops_per_step: Optional[float]):
    self._clock = time.perf_counter
    self._batch = global_batch_size
    self._flops = flops_per_step
    self._peak = peak_flops_per_device()
    self._last_step, self._last_time = None, None

  def update(self, step: int) -> dict[str, float]:
    now = self._clock()
    out = {}
    if self._last_step is not None and step > self._last_step:
      steps_per_s = (step - self._last_step) / (now - self._last_time)
      out["perf/images_per_s"] = steps_per_s * self._batch
      if self._flops:
        out["perf/tflops_per_s_per_device"] = self._flops * steps_per_s / 1e12
        if self._peak:
          out["perf/mfu"] = self._flops * steps_per_s / self._peak
    self._last_step, self._last_time = step, now
    return out
