"""Adam optimisers, optional gradient clipping, and the learning-rate schedules of the ESRGAN paper
and BasicSR."""

from typing import Callable, Mapping

import ml_collections
import optax


def _multistep(config: ml_collections.ConfigDict) -> optax.Schedule:
  # Like torch's MultiStepLR: the rate is multiplied by gamma once `m` updates are done.
  return optax.piecewise_constant_schedule(
      config.learning_rate, {int(m): config.gamma for m in config.milestones})


def _cosine_restarts(config: ml_collections.ConfigDict) -> optax.Schedule:
  # BasicSR's CosineAnnealingRestartLR with unit restart weights: every period anneals from the
  # base rate to eta_min, then restarts.
  periods = [int(p) for p in config.restart_periods]
  schedules = [optax.cosine_decay_schedule(config.learning_rate, p,
                                           alpha=config.eta_min / config.learning_rate)
               for p in periods]
  boundaries, total = [], 0
  for p in periods[:-1]:
    total += p
    boundaries.append(total)
  return optax.join_schedules(schedules, boundaries)


# config.optimizer_*.schedule -> its schedule; config_checks allows these names only.
SCHEDULES: Mapping[str, Callable[[ml_collections.ConfigDict], optax.Schedule]] = {
    "multistep": _multistep,
    "cosine_restarts": _cosine_restarts,
}


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  return SCHEDULES[config.schedule](config)


def clipped(tx: optax.GradientTransformation, max_norm: float) -> optax.GradientTransformation:
  """`tx` fed gradients scaled down to global L2 norm `max_norm` (optax.clip_by_global_norm).

  Not optax.chain: the clip keeps no state, and leaving it out of the optimiser state keeps that
  state's layout the same with clipping on or off, so a run can resume with either setting.
  """
  clip = optax.clip_by_global_norm(max_norm)

  def update(grads, state, params=None):
    grads, _ = clip.update(grads, clip.init(grads), params)
    return tx.update(grads, state, params)
  return optax.GradientTransformation(tx.init, update)


def make_optimizer(config: ml_collections.ConfigDict):
  """Returns (optax transformation, schedule); the schedule is also used to log the rate."""
  schedule = learning_rate_schedule(config)
  tx = optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
  if config.clip_grad_norm:  # 0 or None: off
    tx = clipped(tx, config.clip_grad_norm)
  return tx, schedule
