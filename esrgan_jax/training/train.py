"""The training loop of both ESRGAN stages: state, mesh, input, periodic actions. No numerics.

The config arrives validated (esrgan_jax/config_checks.py, called once by main.py).
`train_and_evaluate` first loads what can fail because of a file (the stage-1 generator, the VGG19
weights, the training and evaluation data), so a bad run fails within seconds with one line,
before anything but the state's initialisation is compiled. Then it builds the sharded state,
restores the newest checkpoint that restores cleanly (a damaged one is set aside with a warning),
and runs the loop. A run stopped at any point
(SIGTERM, a crash, a kill) and started again with the same command continues from its latest
checkpoint and ends with exactly the parameters of an uninterrupted run: the batch of step s
depends only on (seed, s), the step's RNG is folded from s, and the whole state is checkpointed.
"""

import signal
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from esrgan_jax import cli
from esrgan_jax.data import pipeline
from esrgan_jax.data.eval_sets import create_eval_sets, eval_lr_sources
from esrgan_jax.evaluation import evaluate, reports
from esrgan_jax.runtime import parallel
from esrgan_jax.training import failures, progress, realworld_batch, sharded_step, stop_request
from esrgan_jax.training.state import (TrainState, build_networks, generator_arch,
                                       state_initializer)
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.weights import vgg19 as vgg19_weights

# Steps run before a profile starts, so the trace shows steady-state steps.
PROFILE_WARMUP_STEPS = 3


def generator_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {"arch": generator_arch(config), "stage": config.stage}


def load_initial_generator(config: ml_collections.ConfigDict) -> Optional[tuple[Any, Any]]:
  """(params, ema_params) on the host from config.generator_init, or None when it is empty.

  Stage 2 starts G from stage 1's generator (its EMA with config.generator_init_from_ema) and
  the EMA copy from stage 1's EMA; a single exported generator (esrgan_jax.convert) serves as both.
  """
  if not config.generator_init:
    if config.stage == "gan":
      logging.warning("config.generator_init is empty: the GAN stage starts from a random "
                      "generator instead of a PSNR-trained one.")
    return None
  source = config.generator_init
  ema_params, arch = generator_weights.load_generator(source, which="generator_ema")
  expected = generator_meta(config)["arch"]
  if arch != expected:
    raise generator_weights.CheckpointError(
        f"{source}: generator architecture {arch} does not match config.model {expected}")
  if config.generator_init_from_ema or generator_weights.is_generator_checkpoint(source):
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


def _open_data(config: ml_collections.ConfigDict, start_step: int):
  """(training iterator, evaluation sets); data errors become one-line ConfigErrors.

  Only file reading happens here, so ValueError / OSError mean bad data, whose messages already
  name the file or field.
  """
  try:
    eval_sets = create_eval_sets(config.data, scale=config.model.scale,
                                 degradation=config.degradation)
    train_iterator = _open_train_iterator(config, start_step)
  except (ValueError, OSError) as error:
    raise cli.ConfigError(str(error).splitlines()[0]) from error
  return train_iterator, eval_sets


def _open_train_iterator(config: ml_collections.ConfigDict, start_step: int):
  return pipeline.create_train_iterator(
      config.data, scale=config.model.scale, global_batch_size=config.train.batch_size,
      seed=config.seed, start_step=start_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains to config.train.num_steps, or until SIGTERM (then the returned step is smaller).

  Ctrl-C saves a checkpoint and raises Interrupted; a full disk raises DiskFullError.
  """
  num_steps = config.train.num_steps
  manager = checkpoints.create_manager(workdir, config.train.keep_checkpoints)
  train_iterator = None
  try:
    latest = manager.latest_step()
    # Files first: a bad path fails in seconds. A finished run needs no data.
    generator_init = load_initial_generator(config) if latest is None else None
    vgg_params = load_vgg_params(config)
    eval_sets, opened_at = None, latest or 0
    if latest is None or latest < num_steps:
      train_iterator, eval_sets = _open_data(config, start_step=opened_at)

    mesh = parallel.create_mesh()
    networks = build_networks(config)
    # The key carries config.prng_impl ('rbg' compiles initialisation in seconds where threefry
    # takes minutes on CPU), whatever the process-wide default is.
    seed_key = jax.random.key(config.seed, impl=config.prng_impl)
    init_rng, step_rng = jax.random.split(seed_key)
    logging.info("Initialising the %s state on %d device(s)...", config.stage, jax.device_count())
    init_fn = state_initializer(networks, config, realworld_batch.pool_spec(config))
    state_sharding = sharded_step.state_sharding(init_fn, config, mesh)
    state = jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
    if vgg_params is not None:
      state = state.replace(vgg=_place_like(vgg_params, state.vgg))
    restored = checkpoints.restore_latest_good(manager, state)
    if restored is not None:
      state, restored_step = restored
      if int(jax.device_get(state.step)) != restored_step:
        raise generator_weights.CheckpointError(
            f"{manager.directory}: checkpoint {restored_step} holds step "
            f"{int(jax.device_get(state.step))}")
      logging.info("Resumed from step %d in %s", restored_step, manager.directory)
    elif generator_init is not None:
      params, ema_params = generator_init
      state = state.replace(generator=_place_like(params, state.generator),
                            generator_ema=_place_like(ema_params, state.generator_ema))
    start_step = int(jax.device_get(state.step))
    if start_step >= num_steps:
      logging.info("already complete: step %d of %d in %s; nothing to do", start_step, num_steps,
                   workdir)
      return state
    if train_iterator is None or opened_at != start_step:
      # A damaged latest checkpoint: the data restarts at the step actually restored.
      if train_iterator is not None:
        train_iterator.close()
      train_iterator, eval_sets = _open_data(config, start_step=start_step)

    train_step = sharded_step.jit_train_step(networks, config, mesh, state_sharding)
    cli.stop_point()  # a Ctrl-C whose exception a gc callback swallowed: stop here
    trainer = _Trainer(config, workdir, manager, networks, train_step, eval_sets, state,
                       start_step)
    batches = pipeline.prefetch_to_mesh(train_iterator, parallel.batch_sharding(mesh))
    try:
      return trainer.run(batches, step_rng)
    finally:
      batches.close()
      trainer.writer.close()
  finally:
    if train_iterator is not None:
      train_iterator.close()
    manager.close()


def _write_config(config: ml_collections.ConfigDict, workdir: str, writer) -> None:
  """The whole config into WORKDIR/config.json and TensorBoard's hparams, not onto the console."""
  path = epath.Path(workdir) / "config.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  try:
    path.write_text(config.to_json_best_effort(indent=2) + "\n")
  except OSError as error:  # a full disk fails at close, without the file's name
    raise OSError(error.errno, error.strerror, str(path)) from None
  writer.write_hparams(_flat_hparams(config))


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


class _Trainer:
  """The step loop and its periodic actions; owns the one-step-late NaN check.

  Every attribute is set here; `run` walks the steps from `start_step` to num_steps.
  """

  def __init__(self, config, workdir, manager, networks, train_step, eval_sets, state,
               start_step: int):
    self.config = config
    self.workdir = workdir
    self.manager = manager
    self.networks = networks
    self.train_step = train_step  # jitted; lowered and compiled at the first batch
    self.eval_sets = eval_sets
    self.meta = generator_meta(config)
    self.is_chief = jax.process_index() == 0
    # TensorBoard only (process 0): the console gets the progress lines below, once each.
    self.writer = (metric_writers.SummaryWriter(workdir) if self.is_chief
                   else metric_writers.MultiWriter([]))
    if self.is_chief:
      _write_config(config, workdir, self.writer)
    self.hooks = (_profile_hook(config, workdir, start_step)
                  if self.is_chief and config.train.profile_steps > 0 else [])
    self.state = state
    self.start_step = start_step
    self.saved_step = start_step
    self.unreported_save: Optional[int] = None  # an async save not yet known to be on disk
    self.last_metrics = None  # device metrics of the last completed step
    self.pending = None  # (step, device metrics) of the last step, checked one step late
    self.interval_metrics: list[dict[str, float]] = []
    self.compiled = None
    self.timer = progress.Throughput(config.train.batch_size, None, start_step)
    self.stop = stop_request.stop_request()

  def run(self, batches, step_rng) -> TrainState:
    """Trains to num_steps; any crash but a non-finite loss first saves the last good state."""
    try:
      with self.stop:
        for step in range(self.start_step, self.config.train.num_steps):
          try:
            batch = next(batches)
          except (ValueError, OSError) as error:
            raise failures.InputError(str(error).splitlines()[0]) from error
          if not self._step(step, batch, jax.random.fold_in(step_rng, step)):
            break
        self.manager.wait_until_finished()  # the last save's errors surface here
        self._report_finished_save()
    except failures.NonFiniteLossError:
      self._wait_for_saves()
      raise
    except Exception as error:  # pylint: disable=broad-except
      if failures.is_disk_full(error):
        self._wait_for_saves()
        removed = checkpoints.remove_unfinished_saves(self.manager)
        raise failures.disk_full_error(error, self.manager, removed) from None
      self._save_after_crash()
      raise
    except KeyboardInterrupt:  # a second Ctrl-C, inside a step
      self._save_after_crash(cause="a second Ctrl-C")
      raise stop_request.Interrupted(self.saved_step) from None
    finally:
      self.writer.flush()
    if self.stop.signal == signal.SIGINT:
      raise stop_request.Interrupted(self.saved_step)
    return self.state

  def _step(self, step: int, batch, rng) -> bool:
    """Runs step `step` and what follows it; False: stop here."""
    train_config = self.config.train
    if self.compiled is None:
      # Minutes on a CPU: a line first, so the silence has a name.
      logging.info("Compiling the %s step...", self.config.stage)
      lowered = self.train_step.lower(self.state, batch, rng)
      # The lowered module counts convolutions; the compiled one on GPU leaves cuDNN's out.
      flops_per_step = sharded_step.step_flops(self.networks, self.config,
                                               (self.state, batch, rng), lowered)
      self.compiled = lowered.compile()
      logging.info("Compiled the %s step: %s.", self.config.stage,
                   progress.flops_text(flops_per_step))
      self.timer = progress.Throughput(train_config.batch_size, flops_per_step, step)
    self.state, metrics = self.compiled(self.state, batch, rng)
    self.last_metrics = metrics
    done = step + 1
    self._flush_pending()  # the previous step's metrics, now that this one is queued
    self.pending = (done, metrics)
    for hook in self.hooks:
      hook(done)
    is_last = done == train_config.num_steps
    if done % train_config.log_every_steps == 0 or is_last:
      self._flush_pending()
      self._log_progress(done)
    eval_metrics = None
    is_eval = done % train_config.eval_every_steps == 0 or is_last
    if is_eval:
      eval_metrics = self._evaluate(done, write_files=is_last)
      self.timer.restart(done)  # images/s measures training steps only
    preempted = self.stop.requested or self.manager.reached_preemption(done)
    # Every evaluated state is saved with its PSNR, so the best one can be kept.
    if done % train_config.checkpoint_every_steps == 0 or is_eval or preempted:
      self._flush_pending()
      self._save(done, eval_metrics)
    self._report_finished_save()
    if preempted:
      if self.stop.signal != signal.SIGINT:
        logging.warning("Stopped at step %d of %d after saving a checkpoint; run the same "
                        "command again to resume.", done, train_config.num_steps)
      self.manager.wait_until_finished()
      self._report_finished_save()
      return False
    return True

  def _flush_pending(self) -> None:
    """Checks the pending step's metrics (NaN/Inf) and adds them to the logging interval."""
    if self.pending is not None:
      self.interval_metrics.append(self._checked(*self.pending))
      self.pending = None

  def _save(self, step: int, eval_metrics: Optional[dict[str, float]] = None) -> None:
    """Saves the current state (async), after checking that it holds no NaN/Inf.

    A finite loss can still give non-finite parameters (an overflowing gradient), which the
    next loss would show only after this checkpoint had become the latest.
    """
    if not bool(failures.all_finite(self.state.replace(vgg=None))):
      raise failures.NonFiniteLossError(
          f"non-finite parameters after step {step}; stopping, "
          f"{failures.last_good_checkpoint(self.manager)}")
    self._report_finished_save()
    checkpoints.save(self.manager, self.state, self.meta, eval_metrics)
    self.saved_step = step
    self.unreported_save = step

  def _report_finished_save(self) -> None:
    """One line per checkpoint, once its background write is done."""
    if self.unreported_save is not None and not self.manager.is_saving_in_progress():
      logging.info("saved checkpoint step %d -> %s", self.unreported_save,
                   self.manager.directory / str(self.unreported_save))
      self.unreported_save = None

  def _wait_for_saves(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception:  # pylint: disable=broad-except  # the error being raised says more
      pass

  def _save_after_crash(self, cause: Optional[str] = None):
    """Saves the state of the last completed step, unless that step is already saved; `cause`
    names a stop that was not an error (a second Ctrl-C).

    Single-process runs only: a save is collective, and the other processes of a multi-process
    run are not crashing with this one, so they would never join it.
    """
    if jax.process_count() > 1:
      return
    try:
      step = int(jax.device_get(self.state.step))
      if step > self.saved_step and self.last_metrics is not None:
        failures.check_finite(step, {k: float(v) for k, v in
                                     jax.device_get(self.last_metrics).items()}, self.manager)
        self._save(step)
        # The save runs in a background thread: only its end says whether the step was written.
        self.manager.wait_until_finished()
        self._report_finished_save()
        logging.warning("Training stopped by %s: saved step %d first.", cause or "an error", step)
    except Exception as error:  # the state may have been donated to the failed step
      self.unreported_save = None
      logging.error("Could not save a checkpoint after %s: %s", cause or "the error", error)

  def _checked(self, step: int, device_metrics) -> dict[str, float]:
    values = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    failures.check_finite(step, values, self.manager)
    return values

  def _log_progress(self, step: int) -> None:
    """TensorBoard scalars and one console line: step, images/s, losses, ETA."""
    interval, self.interval_metrics = self.interval_metrics, []
    means = {k: float(np.mean([m[k] for m in interval])) for k in interval[0]}
    perf = self.timer.update(step)
    self.writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()}, **perf})
    num_steps = self.config.train.num_steps
    parts = [f"step {step}/{num_steps}"]
    if "perf/images_per_s" in perf:
      parts.append(f"{perf['perf/images_per_s']:.1f} img/s")
    parts += [f"{k} {v:.4g}" for k, v in means.items() if k.startswith("l_")]
    if "perf/mfu" in perf:
      parts.append(f"MFU {perf['perf/mfu']:.1%}")
    steps_per_s = perf.get("perf/images_per_s", 0.0) / self.config.train.batch_size
    if steps_per_s > 0 and step < num_steps:
      parts.append(f"ETA {progress.duration((num_steps - step) / steps_per_s)}")
    logging.info("%s", "  ".join(parts))

  def _evaluate(self, step: int, write_files: bool) -> dict[str, float]:
    """Evaluates the EMA generator; the final one also writes WORKDIR/eval (JSON, pictures)."""
    logging.info("Evaluating step %d on %s...", step, ", ".join(
        f"{name} ({len(items)} images)" for name, items in self.eval_sets.items()))
    generate = evaluate.make_generate_fn(self.networks.generator, self.state.generator_ema)
    results = evaluate.evaluate_sets(generate, self.eval_sets, self.config.model.scale,
                                     self.config.eval,
                                     evaluate.input_multiple(self.networks.generator))
    self.writer.write_scalars(step, reports.scalar_summaries(results))
    reports.write_comparison_images(self.writer, step, results)
    logging.info("step %d evaluation:\n%s", step, reports.format_table(results))
    if write_files and self.is_chief:
      reports.write_results(results, self.workdir, source=f"training step {step} (EMA)",
                             step=step, lr_sources=eval_lr_sources(self.config.data))
    return {checkpoints.BEST_METRIC: reports.headline_psnr(results)}
