"""The training loop of both ESRGAN stages: state, mesh, input, periodic actions. No numerics.

`train_and_evaluate` first does everything that can fail because of the config or a file (config
checks, the stage-1 generator, the VGG19 weights, the training and evaluation data), so a bad run
fails within seconds with one line, before anything is compiled. Then it builds the sharded state,
restores the latest checkpoint if there is one, and runs the loop. A run stopped at any point
(SIGTERM, a crash, a kill) and started again with the same command continues from its latest
checkpoint and ends with exactly the parameters of an uninterrupted run: the batch of step s
depends only on (seed, s), the step's RNG is folded from s, and the whole state is checkpointed.
"""

import functools
import signal
import threading
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from esrgan_jax import checkpoints, config_checks, evaluate, parallel, steps
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.weights import vgg19 as vgg19_weights
from esrgan_jax.data import pipeline
from esrgan_jax.train_state import TrainState, build_networks, init_train_state

# Peak dense bf16 FLOP/s per device, for the MFU estimate (vendor figures).
PEAK_FLOPS = {
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
}
# Steps run before a profile starts, so the trace shows steady-state steps.
PROFILE_WARMUP_STEPS = 3


class NonFiniteLossError(RuntimeError):
  """Training produced NaN/Inf; the message names the step and the last good checkpoint."""


class _StopRequest:
  """Turns SIGTERM (preemption) into a flag the loop checks between steps.

  Single-process runs only: with several processes JAX's preemption service owns SIGTERM and the
  loop asks `manager.reached_preemption`, which makes every process stop at the same step.
  Restores the previous handler on exit, so in-process callers (tests) get theirs back.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
    self.requested = True


def peak_flops_per_device() -> Optional[float]:
  kind = jax.devices()[0].device_kind
  return next((flops for name, flops in PEAK_FLOPS.items() if kind.startswith(name)), None)


def generator_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {"arch": {f: int(config.model[f]) for f in generator_weights.ARCH_FIELDS},
          "stage": config.stage}


def load_initial_generator(config: ml_collections.ConfigDict) -> Optional[tuple[Any, Any]]:
  """(params, ema_params) on the host from config.generator_init, or None when it is empty.

  Stage 2 starts G from stage 1's generator and the EMA copy from stage 1's EMA; a single
  exported generator (esrgan_jax.convert) serves as both.
  """
  if not config.get("generator_init"):
    if config.stage == "gan":
      logging.warning("config.generator_init is empty: the GAN stage starts from a random "
                      "generator instead of a PSNR-trained one.")
    return None
  source = config.generator_init
  ema_params, arch = generator_weights.load_generator(source, which="generator_ema")
  expected = generator_meta(config)["arch"]
  if arch != expected:
    raise generator_weights.CheckpointError(f"{source}: generator architecture {arch} does not "
                                            f"match config.model {expected}")
  if generator_weights.is_generator_checkpoint(source):
    params = ema_params
  else:
    params, _ = generator_weights.load_generator(source, which="generator")
  logging.info("Generator initialised from %s", source)
  return params, ema_params


def load_vgg_params(config: ml_collections.ConfigDict) -> Optional[Any]:
  """The converted VGG19 weights of the perceptual loss on the host; None: keep random ones."""
  if config.stage != "gan":
    return None
  if not config.loss.vgg19_weights:
    logging.warning("config.loss.vgg19_weights is empty: the perceptual loss uses a randomly "
                    "initialised VGG19. Convert torchvision's ImageNet VGG19 with `python -m "
                    "esrgan_jax.convert --vgg19` for real training.")
    return None
  return vgg19_weights.load_vgg19_params(config.loss.vgg19_weights,
                                         layers=tuple(config.loss.perceptual_layers))


def _place_like(tree, like):
  """Host arrays onto the devices and shardings of `like` (same tree structure)."""
  return jax.tree.map(lambda x, y: jax.device_put(np.asarray(x), y.sharding), tree, like)


def _last_good_checkpoint(manager) -> str:
  last = manager.latest_step()
  return (f"the last good checkpoint is step {last} in {manager.directory}" if last is not None
          else "no checkpoint was written yet")


def check_finite(step: int, metrics: dict[str, float], manager) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    raise NonFiniteLossError(f"non-finite loss at step {step}: {bad}; stopping, "
                             f"{_last_good_checkpoint(manager)}")


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _open_data(config: ml_collections.ConfigDict, start_step: int):
  """(training iterator, evaluation sets); data errors become one-line ConfigErrors.

  Only file reading and validation happen here, so ValueError / OSError mean bad data or a bad
  data field, whose messages already name the file or field.
  """
  try:
    eval_sets = pipeline.create_eval_sets(config.data, scale=config.model.scale)
    train_iterator = pipeline.create_train_iterator(
        config.data, scale=config.model.scale, global_batch_size=config.train.batch_size,
        seed=config.seed, start_step=start_step)
  except (ValueError, OSError) as error:
    raise config_checks.ConfigError(str(error).splitlines()[0]) from error
  return train_iterator, eval_sets


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains to config.train.num_steps, or until SIGTERM (then the returned step is smaller)."""
  # Everything that can fail on a config field or a file, before anything is compiled.
  config_checks.validate(config, jax.device_count())
  manager = checkpoints.create_manager(workdir, config.train.keep_checkpoints)
  resume_step = manager.latest_step()
  generator_init = load_initial_generator(config) if resume_step is None else None
  vgg_params = load_vgg_params(config)
  train_iterator, eval_sets = _open_data(config, start_step=resume_step or 0)
  try:
    return _train(config, workdir, manager, resume_step, generator_init, vgg_params,
                  train_iterator, eval_sets)
  finally:
    train_iterator.close()
    manager.close()


def _train(config, workdir, manager, resume_step, generator_init, vgg_params, train_iterator,
           eval_sets) -> TrainState:
  is_chief = jax.process_index() == 0
  mesh = parallel.create_mesh()
  networks = build_networks(config)
  # The key carries config.prng_impl ('rbg' compiles initialisation in seconds where threefry
  # takes minutes on CPU), whatever the process-wide default is.
  seed_key = jax.random.key(config.seed, impl=config.get("prng_impl") or None)
  init_rng, step_rng = jax.random.split(seed_key)

  init_fn = functools.partial(init_train_state, networks, config)
  state_sharding = parallel.state_shardings(jax.eval_shape(init_fn, init_rng), mesh,
                                            config.train.fsdp)
  state = jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
  if vgg_params is not None:
    state = state.replace(vgg=_place_like(vgg_params, state.vgg))
  if resume_step is not None:
    state = checkpoints.restore(manager, state, resume_step)
    logging.info("Resumed from step %d in %s", resume_step, manager.directory)
  elif generator_init is not None:
    params, ema_params = generator_init
    state = state.replace(generator=_place_like(params, state.generator),
                          generator_ema=_place_like(ema_params, state.generator_ema))
  start_step = int(jax.device_get(state.step))
  if start_step != (resume_step or 0):  # the data iterator was opened at resume_step
    raise RuntimeError(f"{manager.directory}: checkpoint {resume_step} holds step {start_step}")

  batch_sharding = parallel.batch_sharding(mesh)
  train_step = jax.jit(
      steps.make_train_step(networks, config),
      in_shardings=(state_sharding, batch_sharding, parallel.replicated(mesh)),
      out_shardings=(state_sharding, parallel.replicated(mesh)),
      donate_argnums=0)
  batches = pipeline.prefetch_to_mesh(train_iterator, batch_sharding)

  # Only process 0 writes event files; the others log to the console.
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
  if start_step == 0:
    writer.write_hparams(_flat_hparams(config))
  report = periodic_actions.ReportProgress(num_train_steps=config.train.num_steps, writer=writer)
  hooks = [report]
  if is_chief and config.train.profile_steps > 0:
    hooks.extend(_profile_hook(config, workdir, start_step))
  loop = _Loop(config, workdir, manager, writer, report, train_step, eval_sets, networks)
  try:
    return loop.run(state, batches, step_rng, start_step, hooks)
  finally:
    batches.close()
    writer.close()


def _profile_hook(config, workdir, start_step) -> list[periodic_actions.PeriodicAction]:
  """One profiler trace of config.train.profile_steps steps after a short warm-up."""
  first = start_step + PROFILE_WARMUP_STEPS
  if first + config.train.profile_steps > config.train.num_steps:
    logging.warning("No profile: %d warm-up plus %d profiled steps do not fit before step %d.",
                    PROFILE_WARMUP_STEPS, config.train.profile_steps, config.train.num_steps)
    return []
  return [periodic_actions.Profile(logdir=workdir, num_profile_steps=config.train.profile_steps,
                                   profile_duration_ms=0, first_profile=first, every_secs=None)]


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

  def __init__(self, config, workdir, manager, writer, report, train_step, eval_sets, networks):
    self.config = config
    self.workdir = workdir
    self.manager = manager
    self.writer = writer
    self.report = report
    self.train_step = train_step
    self.eval_sets = eval_sets
    self.networks = networks
    self.meta = generator_meta(config)

  def run(self, state, batches, step_rng, start_step, hooks):
    """Trains to num_steps; any crash but a non-finite loss first saves the last good state."""
    self.state, self.saved_step, self.last_metrics = state, start_step, None
    try:
      with _StopRequest() as stop:
        self._steps(batches, step_rng, start_step, hooks, stop)
    except NonFiniteLossError:
      raise
    except BaseException:
      self._save_after_crash()
      raise
    finally:
      self.manager.wait_until_finished()
      self.writer.flush()
    return self.state

  def _steps(self, batches, step_rng, start_step, hooks, stop):
    train_config = self.config.train
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
        timer = _Throughput(train_config.batch_size, flops, start_step)
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
      is_eval = done % train_config.eval_every_steps == 0 or is_last
      if is_eval:
        with self.report.timed("eval"):
          eval_metrics = self._evaluate(done, self.state, write_files=is_last)
        timer.restart(done)  # images/s measures training steps only
      preempted = stop.requested or self.manager.reached_preemption(done)
      # Every evaluated state is saved with its PSNR, so the best one can be kept.
      if done % train_config.checkpoint_every_steps == 0 or is_eval or preempted:
        if pending is not None:
          interval_metrics.append(self._checked(*pending))
          pending = None
        self._save(done, eval_metrics)
      if preempted:
        logging.warning("Stopped at step %d of %d after saving a checkpoint; run the same "
                        "command again to resume.", done, train_config.num_steps)
        break

  def _save(self, step: int, eval_metrics: Optional[dict[str, float]] = None) -> None:
    """Saves the current state (async), after checking that it holds no NaN/Inf.

    A finite loss can still give non-finite parameters (an overflowing gradient), which the
    next loss would show only after this checkpoint had become the latest.
    """
    if not bool(_all_finite(self.state.replace(vgg=None))):
      raise NonFiniteLossError(f"non-finite parameters after step {step}; stopping, "
                               f"{_last_good_checkpoint(self.manager)}")
    checkpoints.save(self.manager, self.state, self.meta, eval_metrics)
    self.saved_step = step

  def _save_after_crash(self):
    """Saves the state of the last completed step, unless that step is already saved.

    Single-process runs only: a save is collective, and the other processes of a multi-process
    run are not crashing with this one, so they would never join it.
    """
    if jax.process_count() > 1:
      return
    try:
      step = int(jax.device_get(self.state.step))
      if step > self.saved_step and self.last_metrics is not None:
        check_finite(step, {k: float(v) for k, v in
                            jax.device_get(self.last_metrics).items()}, self.manager)
        self._save(step)
        # The save runs in a background thread: only its end says whether the step was written.
        self.manager.wait_until_finished()
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
  """FLOPs of one step on one device, as XLA counts them (a multiply-add is 2)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # not every backend implements cost analysis
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis["flops"]) if analysis and "flops" in analysis else None


class _Throughput:
  """images/s, achieved FLOP/s and MFU over each logging interval (from the compiled step on)."""

  def __init__(self, global_batch_size: int, flops_per_step: Optional[float], start_step: int):
    self._clock = time.perf_counter
    self._batch = global_batch_size
    self._flops = flops_per_step
    self._peak = peak_flops_per_device()
    self.restart(start_step)

  def restart(self, step: int) -> None:
    """Starts the next interval at `step`, now."""
    self._last_step, self._last_time = step, self._clock()

  def update(self, step: int) -> dict[str, float]:
    now = self._clock()
    out = {}
    if step > self._last_step and now > self._last_time:
      steps_per_s = (step - self._last_step) / (now - self._last_time)
      out["perf/images_per_s"] = steps_per_s * self._batch
      if self._flops:
        out["perf/tflops_per_s_per_device"] = self._flops * steps_per_s / 1e12
        if self._peak:
          out["perf/mfu"] = self._flops * steps_per_s / self._peak
    self._last_step, self._last_time = step, now
    return out
