"""Real-ESRGAN's device side of a batch: GT squares in, a degraded, cropped, pooled pair out.

`make_batch(state, gt, step, *, settings) -> (state, {'lr', 'hr'[, 'hr_usm']})` is pure and
jittable (`BatchSettings`: the config fields it reads, taken once outside the trace); train.py
composes it with the stage's train step into one program (`with_degradations`), so the
degradations never leave the device and compile once with the step. In the order of
Real-ESRGAN's RealESRNetModel / RealESRGANModel `feed_data`:
1. LR = `degrade_batch(seed, step, gt, slots)`, whose first operation USM-sharpens the GT;
2. the paired random crop: patch_size GT, patch_size // scale LR, at the same place of the GT
   (stage 'psnr' with l1_gt_usm: of the USM-sharpened GT, Real-ESRNet's `gt_usm`) and the LR;
3. the training-pair pool (`update_pool`, Real-ESRGAN's `_dequeue_and_enqueue`);
4. stage 'gan' with a *_gt_usm loss option: hr_usm = usm_sharp(pooled GT crop), as
   RealESRGANModel sharpens again after the pool; 'hr' stays unsharpened (the D's real input).

Keys (threefry, so vmapped draws do not depend on the batch layout): the degradation uses
(seed, step, slot) as data/degradations/second_order.py says; the crop position and the pool's
shuffle come from their own streams, fold_in(fold_in(key(seed), stream), step), then the slot.
Streams are >= 2**31, which no int32 step reaches, so no key is shared with the degradation's.
The jitted step sees the global batch, so slot i is row i of it, the host pipeline's slot i
(process p's local row j is slot p * B/P + j): the LR of step s is the same on any topology.

The crop position is one per batch, as BasicSR's `paired_random_crop` of a batch tensor is
(every GT square has the same size); with config.degradation.per_sample_choices, one per slot.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from esrgan_jax.data.degradations import degrade_batch, frozen_table, usm_sharp

CROP_STREAM = 2**31 + 1
POOL_STREAM = 2**31 + 2


def uses_degradations(config: ml_collections.ConfigDict) -> bool:
  return config.data.lr_source == "degradation"


def sharpens_before_pool(config: ml_collections.ConfigDict) -> bool:
  """Real-ESRNet (stage 'psnr') sharpens the whole GT and pools it sharpened."""
  return config.stage == "psnr" and config.loss.l1_gt_usm


def needs_usm_target(config: ml_collections.ConfigDict) -> bool:
  loss = config.loss
  return config.stage == "gan" and (loss.l1_gt_usm or loss.percep_gt_usm or loss.gan_gt_usm)


def pool_groups(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(groups, slots per group): one pool per group of pool_batch_size consecutive batch slots
  (0: the whole batch). Real-ESRGAN keeps one pool per GPU for its batch_size_per_gpu slots."""
  batch = config.train.batch_size
  per_group = config.degradation.pool_batch_size or batch
  return batch // per_group, per_group


class BatchSettings(NamedTuple):
  """What make_batch reads, taken from the config once, outside the trace: plain values and the
  degradation table frozen (immutable, hashable)."""
  seed: int
  scale: int
  patch_size: int
  sharpens_before_pool: bool
  needs_usm_target: bool
  degradation: Any  # ml_collections.FrozenConfigDict of config.degradation

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "BatchSettings":
    return cls(seed=config.seed, scale=config.model.scale, patch_size=config.data.patch_size,
               sharpens_before_pool=sharpens_before_pool(config),
               needs_usm_target=needs_usm_target(config),
               degradation=frozen_table(config.degradation))


def pool_spec(config: ml_collections.ConfigDict):
  """Shapes and dtypes of the pool in the train state, (groups, pool_size, ...), or None.

  LR and unsharpened GT are on 8-bit levels, so they are kept as their uint8 codes (exact, a
  quarter of the memory and checkpoint); Real-ESRNet's sharpened GT is not, and stays float32.
  """
  size = config.degradation.pool_size
  if not uses_degradations(config) or not size:
    return None
  groups, _ = pool_groups(config)
  patch, scale = config.data.patch_size, config.model.scale
  channels = config.model.num_out_ch
  hr_dtype = jnp.float32 if sharpens_before_pool(config) else jnp.uint8
  lr_shape = (groups, size, patch // scale, patch // scale, channels)
  return {"lr": jax.ShapeDtypeStruct(lr_shape, jnp.uint8),
          "hr": jax.ShapeDtypeStruct((groups, size, patch, patch, channels), hr_dtype)}


def _stream_key(seed: int, stream: int, step):
  base = jax.random.key(seed, impl="threefry2x32")
  return jax.random.fold_in(jax.random.fold_in(base, jnp.uint32(stream)), step)


def crop_offsets(seed: int, step, slots, lr_size: tuple[int, int], lr_patch: int,
                 per_sample: bool):
  """(N, 2) top-left corners on the LR grid, uniform over every position of the patch."""
  key = _stream_key(seed, CROP_STREAM, step)
  maxval = jnp.asarray([lr_size[0] - lr_patch + 1, lr_size[1] - lr_patch + 1], jnp.int32)
  draw = lambda k: jax.random.randint(k, (2,), 0, maxval)
  if per_sample:
    return jax.vmap(lambda slot: draw(jax.random.fold_in(key, slot)))(slots.astype(jnp.uint32))
  return jnp.broadcast_to(draw(key), (slots.shape[0], 2))


def crop(images, offsets, size: int, scale: int = 1):
  """The size x size patch of each image at offsets * scale."""
  def one(image, offset):
    top, left = offset[0] * scale, offset[1] * scale
    return jax.lax.dynamic_slice(image, (top, left, 0), (size, size, image.shape[-1]))
  return jax.vmap(one)(images, offsets)


def _encode(x, dtype):
  return jnp.round(x * 255.0).astype(jnp.uint8) if dtype == jnp.uint8 else x.astype(dtype)


def _decode(x):
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x


def update_pool(pool, batch, step, key):
  """Real-ESRGAN's `_dequeue_and_enqueue`, one pool (G, P, ...) per group of B/G batch slots.

  Steps 0 .. P/(B/G) - 1 fill each pool in order and train on their own batch. From then on each
  step shuffles each pool with a fresh permutation (keyed by the group), takes its first B/G
  pairs to train on, and puts the group's new pairs in their place. Returns (pool, batch).
  """
  groups = pool["lr"].shape[0]
  split = lambda x: x.reshape(groups, x.shape[0] // groups, *x.shape[1:])
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(groups, dtype=jnp.uint32))
  pool, out = jax.vmap(_update_one_pool, (0, 0, None, 0))(
      pool, {k: split(v) for k, v in batch.items()}, step, keys)
  return pool, {k: v.reshape(-1, *v.shape[2:]) for k, v in out.items()}


def _update_one_pool(pool, batch, step, key):
  size = pool["lr"].shape[0]
  b = batch["lr"].shape[0]
  encoded = {k: _encode(v, pool[k].dtype) for k, v in batch.items()}

  def fill(_):
    start = step * b
    return ({k: jax.lax.dynamic_update_slice_in_dim(pool[k], encoded[k], start, 0)
             for k in pool}, encoded)

  def swap(_):
    order = jax.random.permutation(key, size)
    shuffled = {k: v[order] for k, v in pool.items()}
    return ({k: v.at[:b].set(encoded[k]) for k, v in shuffled.items()},
            {k: v[:b] for k, v in shuffled.items()})

  pool, out = jax.lax.cond(step < size // b, fill, swap, None)
  return pool, {k: _decode(v) for k, v in out.items()}


def make_batch(state, gt, step, *, settings: BatchSettings):
  """(state, training batch) of step `step` from the global GT batch (B, S, S, 3) (uint8 or
  float in [0, 1]); the state changes only in its pool."""
  gt = _decode(gt) if gt.dtype == jnp.uint8 else gt.astype(jnp.float32)
  n, height, width, _ = gt.shape
  scale, patch, seed = settings.scale, settings.patch_size, settings.seed
  degradation = settings.degradation
  slots = jnp.arange(n, dtype=jnp.int32)
  target = usm_sharp(gt, **degradation.usm) if settings.sharpens_before_pool else gt
  lr = degrade_batch(seed, step, gt, slots, degradation,
                     sharpened=target if settings.sharpens_before_pool else None)
  offsets = crop_offsets(seed, step, slots, (height // scale, width // scale),
                         patch // scale, degradation.per_sample_choices)
  pair = {"lr": crop(lr, offsets, patch // scale), "hr": crop(target, offsets, patch, scale)}
  if state.pool is not None:
    pool, pair = update_pool(state.pool, pair, step, _stream_key(seed, POOL_STREAM, step))
    state = state.replace(pool=pool)
  if settings.sharpens_before_pool:
    pair["hr_usm"] = pair["hr"]
  elif settings.needs_usm_target:
    pair["hr_usm"] = usm_sharp(pair["hr"], **degradation.usm)
  return state, pair


def with_degradations(train_step, config: ml_collections.ConfigDict):
  """`train_step(state, batch, rng)` preceded by make_batch on batch['hr'] at state.step; the
  config is read here, once (BatchSettings)."""
  settings = BatchSettings.from_config(config)

  def realworld_train_step(state, batch, rng):
    state, pair = make_batch(state, batch["hr"], state.step, settings=settings)
    return train_step(state, pair, rng)
  return realworld_train_step
