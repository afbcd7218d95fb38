"""Real-ESRGAN's second-order degradation as one jitted program: GT (N, H, W, 3) -> LR (N, H/s, W/s, 3).

Randomness: `sample_params` draws everything first (returned as a dict, so tests check the
distributions without inverting images), `apply_degradations` then is a deterministic function.
Per-sample draws come from the sample's key; batch-level choices (resize up/down/keep, scale and
mode of both resizes, Gaussian-or-Poisson of both noise steps, whether the second blur runs, the
order of the final step and its resize mode) come from the batch key and are broadcast, as in the
recipe, or from the sample key with config.per_sample_choices. Both are the same program: every
choice is a `where` between branches, and a branch that no sample of the batch takes is skipped
at run time by a `lax.cond` on its predicate's any() (`_if_any`), so no draw can change what is
compiled, and a batch-level choice runs one branch only. With per-sample choices a branch runs
whenever one sample needs it; each sample still reads only its own branch.

`degrade_batch(seed, step, gt, slots, config)` makes the batch key fold_in(key(seed), step) and
sample keys fold_in(batch key, slot) for each global batch slot, so the LR of a sample depends only
on (seed, step, slot): the same on any number of devices and after a resume. Keys are threefry:
the 'rbg' generator's draws under vmap depend on the batch layout, threefry's do not.

Static shapes: the image after the first resize lives in the top-left corner of a canvas of
floor(H * up1) rows (up1 = the largest first-resize scale), after the second in one of
floor(H / s * up2) rows; resizes are matrix products with matrices built from the traced sizes
(resampling.py), the second blur reflects at each sample's valid edges (filters.py), noise level counts
and JPEG see zeros outside (JPEG pads with zeros anyway, and its blocks start at the top-left
corner, so a canvas changes nothing), and the final resize goes to the static H/s. One program per
GT shape and config.

Steps 9-10 of the recipe (paired random crop, training-pair pool) belong to the trainer; the LR
returned here is clamped and rounded to 8-bit levels.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from esrgan_jax.data.degradations import filters, kernels, noise, resampling
from esrgan_jax.data.degradations.jpeg import jpeg_compress

UP, DOWN, KEEP = 0, 1, 2


def frozen_table(config) -> ml_collections.FrozenConfigDict:
  """The degradation table (configs/realesrgan_degradation.py) as an immutable, hashable value,
  read once: what the jitted programs close over instead of a ConfigDict that could change
  after they were traced. The values are the table's own, so the programs are the same."""
  return ml_collections.FrozenConfigDict(config)


def _threefry(key):
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    if jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0, impl="threefry2x32")):
      return key
    key = jax.random.key_data(key).ravel()[:2].astype(jnp.uint32)
  return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32).ravel()[:2], impl="threefry2x32")


def _resize_from_uniforms(u, cfg):
  kind = kernels.categorical(u[0], cfg.prob)
  up = kernels.between(u[1], cfg.up)
  down = kernels.between(u[1], cfg.down)
  scale = jnp.where(kind == UP, up, jnp.where(kind == DOWN, down, 1.0))
  mode = kernels.categorical(u[2], cfg.mode_prob)
  return dict(kind=kind, scale=scale, mode=mode)


# Each draw below is one entry of a single uniform vector per batch or sample: one threefry call
# instead of one per draw, each of which costs XLA's CPU compiler time (kernels.py).
def _batch_choices(key, config):
  u = jax.random.uniform(key, (11,))
  return dict(
      resize1=_resize_from_uniforms(u[0:3], config.resize1),
      gaussian1=u[3] < config.noise1.gaussian_prob,
      blur2=u[4] < config.second_blur_prob,
      resize2=_resize_from_uniforms(u[5:8], config.resize2),
      gaussian2=u[8] < config.noise2.gaussian_prob,
      resize_first=u[9] < config.final_resize_first_prob,
      final_mode=kernels.categorical(u[10], config.final_mode_prob),
  )


def _sample_draws(key, config):
  k_u, k_noise1, k_noise2 = jax.random.split(key, 3)
  nk, ns, nn = kernels.KERNEL_UNIFORMS, kernels.SINC_UNIFORMS, noise.NOISE_UNIFORMS
  u = jax.random.uniform(k_u, (2 * nk + ns + 2 * nn + 3,))
  parts = jnp.split(u, np.cumsum([nk, nk, ns, nn, nn, 1, 1]))
  k1, p1 = kernels.kernel_from_uniforms(parts[0], config.kernel1)
  k2, p2 = kernels.kernel_from_uniforms(parts[1], config.kernel2)
  sinc, ps = kernels.sinc_from_uniforms(parts[2], config.final_sinc_sizes,
                                        config.final_sinc_cutoff)
  use_sinc = parts[7][0] < config.final_sinc_prob
  sinc = jnp.where(use_sinc, sinc, kernels.pulse_kernel())
  n1, n2 = ({k: v[0] for k, v in noise.noise_params_from_uniforms(u_noise[None], cfg).items()}
            for u_noise, cfg in ((parts[3], config.noise1), (parts[4], config.noise2)))
  q1 = kernels.between(parts[5][0], config.jpeg1)
  q2 = kernels.between(parts[6][0], config.jpeg2)
  return dict(
      kernel1=k1, kernel1_params=p1, kernel2=k2, kernel2_params=p2,
      sinc=sinc, sinc_params=dict(ps, applied=use_sinc), noise1=n1, noise2=n2,
      jpeg1_quality=q1, jpeg2_quality=q2, noise1_key=k_noise1, noise2_key=k_noise2)


def sample_params(batch_key, sample_keys, config):
  """Every random draw of the pipeline for a batch, as a dict of per-sample (N, ...) arrays."""
  n = sample_keys.shape[0]
  params = jax.vmap(functools.partial(_sample_draws, config=config))(sample_keys)
  if config.per_sample_choices:
    choice_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(sample_keys)
    choices = jax.vmap(functools.partial(_batch_choices, config=config))(choice_keys)
  else:
    choices = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,)),
                           _batch_choices(jax.random.fold_in(batch_key, 1), config))
  params.update(choices)
  return params


def _resize_matrices(in_size, out_size, in_canvas, out_canvas, mode, ratio):
  fn = lambda i, o, m, r: resampling.resize_matrix(i, o, in_canvas, out_canvas, m, r)
  return jax.vmap(fn)(in_size, out_size, mode, ratio)


def _if_any(taken, branch, like):
  """branch() where some sample takes it (taken: (N,) bool), else zeros like `like`; the
  caller selects per sample, so the zeros are never read. Skips a Poisson field, a blur or a
  final order that a batch-level choice left out: one compiled program, half the work."""
  return jax.lax.cond(jnp.any(taken), branch, lambda: jnp.zeros_like(like))


def _select(taken, if_taken, otherwise):
  return jnp.where(taken[:, None, None, None], if_taken, otherwise)


def _add_noise(images, params, gaussian, keys, mask):
  # Per-sample keys into batched noise functions (not a vmap over samples of them: a vmapped
  # while loop compiles to a larger program than one over the batch).
  k_g, k_p = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
  g = _if_any(gaussian, lambda: noise.gaussian_noise(k_g, images, params["sigma"],
                                                     params["gray"]), images)
  p = _if_any(~gaussian, lambda: noise.poisson_noise(
      k_p, images, params["poisson_scale"], params["gray"], mask), images)
  return jnp.clip(images + _select(gaussian, g, p), 0, 1) * mask


def canvas_sizes(h, w, config):
  """Static canvas sizes after the first and second resizes."""
  up1, up2 = config.resize1.up[1], config.resize2.up[1]
  return ((int(h * up1), int(w * up1)),
          (int(h / config.scale * up2), int(w / config.scale * up2)))


def apply_degradations(gt, params, config, sharpened=None):
  """The deterministic part: GT (N, H, W, 3) in [0, 1] and `sample_params` -> LR.

  `sharpened`, if given, is usm_sharp(gt) already made by a caller that needs it too (Real-ESRNet
  pools the sharpened GT), so the program sharpens once.
  """
  n, h, w, _ = gt.shape
  s = config.scale
  if h % s or w % s:
    raise ValueError(f"GT size {h}x{w} is not a multiple of the scale {s}")
  (c1h, c1w), (c2h, c2w) = canvas_sizes(h, w, config)
  lh, lw = h // s, w // s

  x = filters.usm_sharp(gt, **config.usm) if sharpened is None else sharpened
  x = filters.filter2d(x, params["kernel1"])

  # First resize: F.interpolate(scale_factor=s1), size floor(H s1), coordinates mapped by 1/s1.
  r1 = params["resize1"]
  s1 = r1["scale"]
  h1 = jnp.clip(jnp.floor(h * s1), 1, c1h).astype(jnp.int32)
  w1 = jnp.clip(jnp.floor(w * s1), 1, c1w).astype(jnp.int32)
  inv = jnp.where(r1["mode"] == 0, jnp.nan, 1.0 / s1)
  ratio_h = jnp.where(r1["mode"] == 0, h / h1, inv)
  ratio_w = jnp.where(r1["mode"] == 0, w / w1, inv)
  full_h, full_w = jnp.full((n,), h, jnp.int32), jnp.full((n,), w, jnp.int32)
  x = resampling.apply_resize(x, _resize_matrices(full_h, h1, h, c1h, r1["mode"], ratio_h),
                          _resize_matrices(full_w, w1, w, c1w, r1["mode"], ratio_w))
  mask1 = filters.valid_mask((c1h, c1w), (h1, w1))

  x = _add_noise(x, params["noise1"], params["gaussian1"], params["noise1_key"], mask1)
  x = jpeg_compress(jnp.clip(x, 0, 1), params["jpeg1_quality"]) * mask1

  blurred = _if_any(params["blur2"], lambda: filters.filter2d(x, params["kernel2"], (h1, w1)), x)
  x = _select(params["blur2"], blurred, x)

  # Second resize: F.interpolate(size=int(H / scale * s2)), coordinates mapped by the sizes.
  r2 = params["resize2"]
  h2 = jnp.clip(jnp.floor(h / s * r2["scale"]), 1, c2h).astype(jnp.int32)
  w2 = jnp.clip(jnp.floor(w / s * r2["scale"]), 1, c2w).astype(jnp.int32)
  x = resampling.apply_resize(
      x, _resize_matrices(h1, h2, c1h, c2h, r2["mode"], h1 / h2),
      _resize_matrices(w1, w2, c1w, c2w, r2["mode"], w1 / w2))
  mask2 = filters.valid_mask((c2h, c2w), (h2, w2))
  x = _add_noise(x, params["noise2"], params["gaussian2"], params["noise2_key"], mask2)

  def final_resize(images):
    fm = params["final_mode"]
    out_h, out_w = jnp.full((n,), lh, jnp.int32), jnp.full((n,), lw, jnp.int32)
    images = resampling.apply_resize(images, _resize_matrices(h2, out_h, c2h, lh, fm, h2 / lh),
                                 _resize_matrices(w2, out_w, c2w, lw, fm, w2 / lw))
    return filters.filter2d(images, params["sinc"])

  q2 = params["jpeg2_quality"]
  first = params["resize_first"]
  lr_like = jnp.zeros((n, lh, lw, x.shape[-1]), x.dtype)
  resize_first = _if_any(first, lambda: jpeg_compress(jnp.clip(final_resize(x), 0, 1), q2),
                         lr_like)
  jpeg_first = _if_any(~first, lambda: final_resize(jpeg_compress(jnp.clip(x, 0, 1), q2) * mask2),
                       lr_like)
  x = _select(first, resize_first, jpeg_first)
  return jnp.clip(jnp.round(x * 255.0), 0, 255) / 255.0


def sample_keys_for(batch_key, slots):
  return jax.vmap(jax.random.fold_in, (None, 0))(batch_key, jnp.asarray(slots, jnp.uint32))


def degrade(key, gt, config):
  """LR of the GT batch (N, H, W, 3) in [0, 1]; sample i uses fold_in(key, i). Jittable."""
  key = _threefry(key)
  keys = sample_keys_for(key, jnp.arange(gt.shape[0]))
  return apply_degradations(gt, sample_params(key, keys, config), config)


def batch_key(seed, step):
  """The key of a training step: fold_in(threefry key(seed), step)."""
  return jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), step)


def degrade_batch(seed, step, gt, slots, config, sharpened=None):
  """LR of the GT samples at global batch positions `slots` (N,) of step `step`.

  A device holding slots [4, 8) of a batch of 8 gets exactly what one device degrading all 8
  gets for those slots. seed, step and slots may be traced. `sharpened`: as apply_degradations.
  """
  key = batch_key(seed, step)
  params = sample_params(key, sample_keys_for(key, slots), config)
  return apply_degradations(gt, params, config, sharpened)


def image_degrader(config):
  """`degrade_image(image, seed, slot)`: the LR of one whole uint8 HxWx3 image, cropped at the
  bottom/right to a multiple of config.scale, as degrade_batch makes it for batch slot `slot` of
  step 0: the same (seed, slot) gives the same LR, so it can serve as a paired validation image.
  One jitted program, compiled once per image size.
  """
  table = frozen_table(config)
  degrade_one = jax.jit(
      lambda seed, gt, slot: degrade_batch(seed, 0, gt[None], slot[None], table)[0])

  def degrade_image(image: np.ndarray, seed: int, slot: int) -> np.ndarray:
    s = table.scale
    h, w = image.shape[0] // s * s, image.shape[1] // s * s
    gt = jnp.asarray(image[:h, :w], jnp.float32) / 255.0
    lr = degrade_one(jnp.int32(seed), gt, jnp.int32(slot))
    return np.asarray(jnp.round(lr * 255.0)).astype(np.uint8)
  return degrade_image
