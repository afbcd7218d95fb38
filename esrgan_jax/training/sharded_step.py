"""The train step as training compiles it, for any mesh: state shardings, the jitted step, and
the abstract arguments of one call.

training/train.py runs it on the devices it has; esrgan_jax/plan.py compiles the same program for
a Cloud TPU topology that is not there (runtime/tpu_plan.py), so what plan measures is what a
run would execute.
"""

from typing import Any, Callable, Optional

import jax
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from esrgan_jax.data import pipeline
from esrgan_jax.runtime import flops, parallel
from esrgan_jax.training import realworld_batch, steps
from esrgan_jax.training.state import Networks, TrainState


def make_step_fn(networks: Networks, config: ml_collections.ConfigDict):
  """The stage's `train_step(state, batch, rng)`; with lr_source='degradation' it starts with
  realworld_batch.make_batch on the GT batch, in the same jitted program."""
  train_step = steps.make_train_step(networks, config)
  if realworld_batch.uses_degradations(config):
    return realworld_batch.with_degradations(train_step, config)
  return train_step


def state_sharding(init_fn: Callable[[jax.Array], TrainState], config: ml_collections.ConfigDict,
                   mesh: Mesh) -> Any:
  """The shardings of the state `init_fn` makes: replicated or FSDP (config.train.fsdp), the pair
  pools split by group over the 'data' axis when the groups divide evenly (then each device
  keeps the pools of its own batch slots, as each Real-ESRGAN GPU does)."""
  abstract = jax.eval_shape(init_fn, jax.random.key(0, impl=config.prng_impl))
  sharding = parallel.state_shardings(abstract, mesh, config.train.fsdp)
  groups, _ = realworld_batch.pool_groups(config)
  if sharding.pool is None or groups % mesh.shape[parallel.DATA_AXIS]:
    return sharding
  by_group = NamedSharding(mesh, PartitionSpec(parallel.DATA_AXIS))
  return sharding.replace(pool=jax.tree.map(lambda _: by_group, sharding.pool))


def jit_train_step(networks: Networks, config: ml_collections.ConfigDict, mesh: Mesh,
                   sharding: Any):
  """`step(state, batch, rng) -> (state, metrics)`, jitted over `mesh`: the state in `sharding`
  and donated, the batch split over the 'data' axis, the key and metrics replicated."""
  return jax.jit(
      make_step_fn(networks, config),
      in_shardings=(sharding, parallel.batch_sharding(mesh), parallel.replicated(mesh)),
      out_shardings=(sharding, parallel.replicated(mesh)),
      donate_argnums=0)


def abstract_arguments(init_fn: Callable[[jax.Array], TrainState],
                       config: ml_collections.ConfigDict, mesh: Mesh, sharding: Any):
  """(state, batch, rng) of one call as ShapeDtypeStructs with their shardings: what
  `jit_train_step(...).lower` needs to compile without a single array."""
  key = jax.eval_shape(lambda: jax.random.key(0, impl=config.prng_impl))
  state = jax.tree.map(lambda leaf, where: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                                sharding=where),
                       jax.eval_shape(init_fn, key), sharding)
  batch = {name: jax.ShapeDtypeStruct(shape, dtype, sharding=parallel.batch_sharding(mesh))
           for name, (shape, dtype) in pipeline.global_batch_spec(
               config.data, scale=config.model.scale,
               global_batch_size=config.train.batch_size).items()}
  rng = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=parallel.replicated(mesh))
  return state, batch, rng


def step_flops(networks: Networks, config: ml_collections.ConfigDict, arguments,
               lowered=None) -> Optional[float]:
  """XLA's FLOP count of one step (runtime/flops.py: the lowered program's), given its
  arguments (arrays or ShapeDtypeStructs) and, without accumulation, the lowered step itself.

  XLA counts a loop's body once, so a step that accumulates over micro-batches is counted as the
  same step on the whole batch in one pass, which does the same arithmetic; that program is only
  lowered, on the default device, never compiled.
  """
  if config.train.grad_accum_steps == 1 and lowered is not None:
    return flops.lowered_flops(lowered)
  one_pass = config.copy_and_resolve_references()
  one_pass.train.grad_accum_steps = 1
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), arguments)
  return flops.lowered_flops(jax.jit(make_step_fn(networks, one_pass)).lower(*shapes))
