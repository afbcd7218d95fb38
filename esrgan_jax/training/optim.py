"""Adam optimisers and the learning-rate schedules of the ESRGAN paper and BasicSR."""

import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  if config.schedule == "multistep":
    # Like torch's MultiStepLR: the rate is multiplied by gamma once `m` updates are done.
    return optax.piecewise_constant_schedule(
        config.learning_rate, {int(m): config.gamma for m in config.milestones})
  if config.schedule == "cosine_restarts":
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
  raise ValueError(f"optimizer schedule must be 'multistep' or 'cosine_restarts', "
                   f"got {config.schedule!r}")


def make_optimizer(config: ml_collections.ConfigDict):
  """Returns (optax transformation, schedule); the schedule is also used to log the rate."""
  schedule = learning_rate_schedule(config)
  return optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps), schedule
