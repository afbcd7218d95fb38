"""The train state of both ESRGAN stages, and the modules and optimisers that act on it."""

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn
from flax import struct

from esrgan_jax.models import COMPUTE_DTYPES, DISCRIMINATORS, VGG19Features
from esrgan_jax.training import optim
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.weights import rrdbnet


@struct.dataclass
class TrainState:
  """Everything a step reads and writes. Stage 1 leaves the discriminator fields as None, and
  runs without on-device degradations leave `pool` as None.

  `vgg` holds the frozen VGG19 weights of the perceptual loss: part of the state so the step
  receives them as an argument (never as a compiled-in constant), but not checkpointed since they
  are reloaded from their own file.
  """
  step: jax.Array
  generator: Any
  generator_ema: Any
  generator_opt_state: Any
  discriminator: Any = None
  discriminator_stats: Any = None  # BatchNorm statistics or spectral-norm vectors
  discriminator_opt_state: Any = None
  vgg: Any = None
  # Real-ESRGAN's training-pair pool {'lr', 'hr'} (esrgan_jax/training/realworld_batch.py), checkpointed
  # with the rest so that a resumed run trains on the pairs an uninterrupted one would.
  pool: Any = None


class Networks(NamedTuple):
  """The static half of training: modules, optimisers and schedules (no arrays)."""
  generator: nn.Module
  generator_tx: optax.GradientTransformation
  generator_schedule: Callable
  discriminator: Optional[nn.Module] = None
  discriminator_tx: Optional[optax.GradientTransformation] = None
  discriminator_schedule: Optional[Callable] = None
  vgg: Optional[nn.Module] = None


def generator_arch(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The architecture record of config.model.arch's generator, as its checkpoints store it.

  Only that architecture's fields; RRDBNet's record has no "arch" key, as every checkpoint
  written before the others.
  """
  name = config.model.arch
  record = {f: config.model[f] for f in generator_weights.record_fields(name)}
  return generator_weights.normalised_arch(
      record if name == rrdbnet.ARCH_NAME else {"arch": name, **record})


def build_generator(config: ml_collections.ConfigDict, dtype=None) -> nn.Module:
  """The generator in its training form (SPAN: branches, folded only to be run)."""
  kwargs = dict(dtype=dtype or COMPUTE_DTYPES[config.compute_dtype])
  if config.model.arch == rrdbnet.ARCH_NAME:
    kwargs.update(remat_blocks=config.model.remat_blocks, dense_block=config.model.dense_block)
  return generator_weights.generator_from_arch(generator_arch(config), **kwargs)


def build_networks(config: ml_collections.ConfigDict) -> Networks:
  dtype = COMPUTE_DTYPES[config.compute_dtype]
  generator_tx, generator_schedule = optim.make_optimizer(config.optimizer_g)
  networks = Networks(build_generator(config), generator_tx, generator_schedule)
  if config.stage != "gan":
    return networks
  discriminator_cls = DISCRIMINATORS[config.discriminator.name]
  discriminator_kwargs = dict(num_in_ch=config.model.num_out_ch,
                              num_feat=config.discriminator.num_feat, dtype=dtype)
  if config.discriminator.name == "vgg_style":
    discriminator_kwargs["input_size"] = config.data.patch_size
  discriminator_tx, discriminator_schedule = optim.make_optimizer(config.optimizer_d)
  return networks._replace(
      discriminator=discriminator_cls(**discriminator_kwargs),
      discriminator_tx=discriminator_tx,
      discriminator_schedule=discriminator_schedule,
      vgg=VGG19Features(layers=tuple(config.loss.perceptual_layers.keys()), dtype=dtype))


def state_initializer(networks: Networks, config: ml_collections.ConfigDict,
                      pool_spec: Any = None) -> Callable[[jax.Array], TrainState]:
  """`init(rng) -> TrainState`, fresh parameters for every network; pure, so it can be jitted
  with output shardings. The config is read here, once: `init` closes over shapes only.

  pool_spec: ShapeDtypeStructs of the training-pair pool (realworld_batch.pool_spec), which
  starts as zeros; None: no pool.
  """
  patch, scale = config.data.patch_size, config.model.scale
  lr_shape = (1, patch // scale, patch // scale, config.model.num_in_ch)
  hr_shape = (1, patch, patch, config.model.num_out_ch)
  return functools.partial(_init_train_state, networks, lr_shape, hr_shape, pool_spec)


def _init_train_state(networks: Networks, lr_shape: tuple[int, ...], hr_shape: tuple[int, ...],
                      pool_spec: Any, rng: jax.Array) -> TrainState:
  lr = jnp.zeros(lr_shape, jnp.float32)
  hr = jnp.zeros(hr_shape, jnp.float32)
  g_rng, d_rng, vgg_rng = jax.random.split(rng, 3)
  generator = networks.generator.init(g_rng, lr)["params"]
  # The EMA starts as a copy (own buffers, so the step can donate both).
  state = TrainState(step=jnp.zeros((), jnp.int32), generator=generator,
                     generator_ema=jax.tree.map(jnp.array, generator),
                     generator_opt_state=networks.generator_tx.init(generator),
                     pool=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pool_spec))
  if networks.discriminator is None:
    return state
  # Two examples so BatchNorm's batch statistics are defined at init.
  d_variables = networks.discriminator.init(d_rng, jnp.concatenate([hr, hr]))
  return state.replace(
      discriminator=d_variables["params"],
      discriminator_stats=d_variables["batch_stats"],
      discriminator_opt_state=networks.discriminator_tx.init(d_variables["params"]),
      vgg=networks.vgg.init(vgg_rng, hr)["params"])
