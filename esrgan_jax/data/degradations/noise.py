"""Gaussian and Poisson noise of Real-ESRGAN, colour or gray, per sample, on NHWC [0, 1].

Grey noise: BasicSR's torch code draws ONE gray Gaussian field per batch and scales it by each
sample's sigma, so every gray-noised image of a batch carries the same pattern. Here each sample
draws its own field from its own key: that is what the paper describes, it keeps a sample's LR a
function of its own key alone (so it does not depend on how the batch is split over devices), and
the distribution of every single image is unchanged.

Poisson noise follows BasicSR: the image is rounded to 8-bit levels, the number of distinct levels
L of each sample (gray image for gray noise, all channels for colour) is rounded up to a power of
two, vals = 2^ceil(log2 L), and noise = (Poisson(img vals) / vals - img) * scale.

The Poisson counts of poisson_noise come from sample_poisson_codes (an exact inverse CDF by
table: its means take 9 x 256 values, 8-bit codes at 2^0 .. 2^8 levels); sample_poisson (exact: CDF
inversion below a mean of 10, Hormann's PTRS from there) serves any mean. Neither is
jax.random.poisson, and every random field is drawn flat: both for compile time (see
sample_poisson and _draw). Keys may be one per batch or one per sample (N,); the
pipeline passes one per sample into the batched functions rather than vmapping them.
"""

import math

import jax
import jax.numpy as jnp


# torchvision's rgb_to_grayscale weights, used by BasicSR's gray Poisson noise.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _draw(sampler, key, shape):
  """sampler's float32 values of `shape` from one key, or from one key per sample (key of shape
  (N,), shape[0] == N: row i then depends on key i alone, as under vmap).

  Each draw is taken flat and reshaped: the same values (threefry counts elements in row-major
  order either way), but XLA's CPU compiler takes seconds over the counters of a rank-4 draw and a
  fraction of that over a flat one (`python -m benchmarks.degradations poisson`: 2.0 s against
  0.4 s CPU for 4 x 384 x 384 x 4).
  """
  if jnp.ndim(key) == 0:
    return sampler(key, (math.prod(shape),), jnp.float32).reshape(shape)
  size = math.prod(shape[1:])
  return jax.vmap(lambda k: sampler(k, (size,), jnp.float32))(key).reshape(shape)


def _fold_in(key, data):
  return jax.random.fold_in(key, data) if jnp.ndim(key) == 0 else jax.vmap(
      jax.random.fold_in, (0, None))(key, data)


def _per_sample(x, n):
  return jnp.broadcast_to(jnp.asarray(x, jnp.float32), (n,)).reshape(n, 1, 1, 1)


def gaussian_noise(key, images, sigma, gray):
  """The noise field: N(0, sigma / 255) per pixel, the same for all channels where gray.

  key: one key, or one per sample (N,)."""
  n, h, w, c = images.shape
  sigma = _per_sample(sigma, n) / 255.0
  # One draw for both fields: each threefry call is compile time.
  both = _draw(jax.random.normal, key, (n, h, w, c + 1)) * sigma
  colour, gray_field = both[..., :c], both[..., c:]
  gray = _per_sample(gray, n)
  return colour * (1 - gray) + gray_field * gray


# Below this mean the sampler inverts the CDF; at and above it, PTRS (whose constants Hormann fits
# for means >= 10).
PTRS_MIN_LAM = 10.0
# Cap on the rounds of either loop; neither comes near it (see sample_poisson).
_MAX_ROUNDS = 64


def _inversion(u, lam):
  """Poisson(lam) for lam < PTRS_MIN_LAM (elsewhere 0) by sequential search of the CDF from 0.

  The search of one draw stops at the first k with u <= CDF(k), or once k > lam and P(k) has
  fallen below 2^-26: the float32 CDF stops growing short of 1, and a uniform above it would
  otherwise run to the round cap. The tail cut off there holds under 1e-7 of probability; the
  float32 CDF itself is good to a few 1e-6 (some 30 rounded additions).
  """
  small = lam < PTRS_MIN_LAM
  lam = jnp.where(small, lam, 0.0)
  p = jnp.exp(-lam)

  def searching(k, p, cdf):
    return small & (u > cdf) & ((k <= lam) | (p > 2.0 ** -26))

  def cond(state):
    k, p, cdf = state
    return jnp.any(searching(k, p, cdf)) & (jnp.max(k) < _MAX_ROUNDS)

  def body(state):
    k, p, cdf = state
    step = searching(k, p, cdf)
    k = jnp.where(step, k + 1, k)
    p = jnp.where(step, p * lam / k, p)
    return k, p, jnp.where(step, cdf + p, cdf)

  return jax.lax.while_loop(cond, body, (jnp.zeros_like(lam), p, p))[0]


def _stirling_remainder(k):
  """log(k!) - (k log k - k) for integers k >= 0, small in magnitude at every k: lgamma below 10,
  Stirling's series from 10 (truncation error under 1e-10 there), so that no large terms cancel."""
  safe = jnp.maximum(k, 1.0)
  small = jax.lax.lgamma(k + 1.0) - jnp.where(k > 0, safe * jnp.log(safe) - safe, 0.0)
  big = jnp.maximum(k, 10.0)
  series = (0.5 * jnp.log(2 * math.pi * big) + 1 / (12 * big) - 1 / (360 * big**3) +
            1 / (1260 * big**5))
  return jnp.where(k < 10, small, series)


def _log_pmf(k, lam):
  """log P(K = k) of Poisson(lam) for k >= 0: k log(lam / k) + k - lam - remainder, the first part
  as k log1p(d / k) - d with d = lam - k, whose terms are O(|d|), not O(lam) as in
  k log lam - lam - lgamma(k + 1), whose float32 rounding grows with lam."""
  safe_k = jnp.maximum(k, 1.0)
  d = lam - k
  core = jnp.where(k > 0, safe_k * jnp.log1p(d / safe_k) - d, -lam)
  return core - _stirling_remainder(k)


def _ptrs_constants(lam):
  b = 0.931 + 2.53 * jnp.sqrt(lam)
  a = -0.059 + 0.02483 * b
  return a, b, jnp.log(1.1239 + 1.1328 / (b - 3.4)), 0.9277 - 3.6224 / (b - 2)


def _ptrs_round(u, v, lam):
  """One PTRS trial from u ~ U[-0.5, 0.5), v ~ U[0, 1): (k, accepted)."""
  a, b, log_inv_alpha, v_r = _ptrs_constants(lam)
  us = 0.5 - jnp.abs(u)
  k = jnp.floor((2 * a / us + b) * u + lam + 0.43)
  squeeze = (us >= 0.07) & (v <= v_r)
  possible = jnp.isfinite(k) & (k >= 0) & ~((us < 0.013) & (v > us))
  safe_k = jnp.where(possible, k, 0.0)
  bound = jnp.log(v) + log_inv_alpha - jnp.log(a / (us * us) + b)
  return safe_k, squeeze | (possible & (bound <= _log_pmf(safe_k, lam)))


# After PTRS's first round, the draws still open (under 12%) go on in a buffer of this fraction
# of the array, as many passes as it takes: the later rounds then cost an eighth of a full one.
_PTRS_BUFFER_FRACTION = 8


def _uniform_pair(key):
  """Two U[0, 1) from a key's own two threefry words: one hash where uniform(key, (2,)) is two."""
  bits = jax.random.key_data(key).reshape(2)
  return jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0


def _first_true(mask, size):
  """The first `size` positions where the 1-D mask is True, ascending, padded with len(mask):
  jnp.nonzero(mask, size=size), written with a cumulative sum, which XLA's CPU compiler takes
  less time over."""
  total = mask.shape[0]
  slot = jnp.where(mask, jnp.cumsum(mask.astype(jnp.int32)) - 1, size)
  return jnp.full((size,), total, jnp.int32).at[slot].set(
      jnp.arange(total, dtype=jnp.int32), mode="drop")


def _ptrs(key, u, v, lam):
  """Poisson(lam) for lam >= PTRS_MIN_LAM (elsewhere 0), lam (N, M): Hormann's transformed
  rejection with squeeze (PTRS, 1993); key: one, or one per row.

  u ~ U[-0.5, 0.5), v ~ U[0, 1) (N, M): round 0's draws, for every element at once. A round
  accepts with probability over 0.88 for lam >= 10 (Hormann's table), so the rest are few: they
  are gathered (up to a fixed buffer) and go on with draws hashed from (row key, round, column),
  which keeps each element's draws its own whichever other elements are open beside it.
  """
  n, m = lam.shape
  large = lam >= PTRS_MIN_LAM
  lam = jnp.where(large, lam, PTRS_MIN_LAM)
  out, accepted = _ptrs_round(u, v, lam)
  out = jnp.where(large & accepted, out, 0.0).reshape(-1)
  open_ = (large & ~accepted).reshape(-1)
  lam = lam.reshape(-1)
  cap = n * m // _PTRS_BUFFER_FRACTION + 16
  row_keys = key if jnp.ndim(key) else jnp.broadcast_to(key, (n,))

  def cond(state):
    return jnp.any(state[1])

  def body(state):
    # One trial for up to `cap` open draws; draw j's t-th trial (t >= 1) hashes (row key,
    # t m + column), so what it draws does not depend on when it gets into the buffer.
    out, open_, trials = state
    index = _first_true(open_, cap)
    valid = index < n * m
    safe = jnp.where(valid, index, 0)
    data = trials[safe].astype(jnp.uint32) * jnp.uint32(m) + (safe % m).astype(jnp.uint32)
    uv = jax.vmap(lambda k, d: _uniform_pair(jax.random.fold_in(k, d)))(row_keys[safe // m], data)
    k, accepted = _ptrs_round(uv[:, 0] - 0.5, uv[:, 1], lam[safe])
    out = out.at[index].set(jnp.where(accepted, k, out[safe]), mode="drop")
    trials = trials.at[index].add(1, mode="drop")
    still = ~accepted & (trials[safe] < _MAX_ROUNDS)
    return out, open_.at[index].set(still, mode="drop"), trials

  trials = jnp.ones((n * m,), jnp.int32)
  out, _, _ = jax.lax.while_loop(cond, body, (out, open_, trials))
  return out.reshape(n, m)


def sample_poisson(key, lam):
  """Poisson(lam) counts as float32, lam >= 0 (float array of rank >= 1): one draw per element.

  key: one key, or one per sample (N,) for lam (N, ...): sample i's counts then depend on key i
  and its own lam alone.

  Two exact samplers (not approximations) up to float32 arithmetic: inversion below
  PTRS_MIN_LAM, Hormann's PTRS from there (BasicSR's lam = level * vals reaches 256; PTRS holds
  for any larger lam). Why not jax.random.poisson: the same two ideas (Knuth's product below 10),
  but its rank-4 draws compiled slowly on CPU and every round of its rejection loop runs over the
  whole array; here round 0 is whole-array and the few open draws go on in a buffer (1.8x faster
  to run on CPU, and no normal approximation anywhere: the statistics are Poisson's at every lam).
  A draw depends on its key, its position and its lam only, never on its neighbours.
  """
  lam = jnp.asarray(lam, jnp.float32)
  flat = lam.reshape(lam.shape[0], -1)
  # One whole-array draw serves both samplers (each threefry call costs compile time).
  u = _draw(jax.random.uniform, _fold_in(key, 0), (flat.shape[0], 3, flat.shape[1]))
  out = jnp.where(flat < PTRS_MIN_LAM, _inversion(u[:, 0], flat),
                  _ptrs(_fold_in(key, 1), u[:, 1] - 0.5, u[:, 2], flat))
  return out.reshape(lam.shape)


def _codes(images):
  return jnp.clip(jnp.round(images * 255.0), 0, 255).astype(jnp.int32)


def _levels(codes, mask):
  """2^ceil(log2(number of distinct 8-bit codes)) per sample, counted where mask is 1: (N,)."""
  n = codes.shape[0]
  seen = jnp.zeros((n, 256), jnp.float32).at[jnp.arange(n)[:, None], codes.reshape(n, -1)].max(
      jnp.broadcast_to(mask, codes.shape).reshape(n, -1))
  count = jnp.maximum(jnp.sum(seen, axis=1), 1.0)
  return 2.0 ** jnp.ceil(jnp.log2(count))


# Counts the table sampler can return: the largest mean poisson_noise meets is 256 (code 255 at
# 256 levels), and Poisson(256) exceeds 511 with a probability of about 1e-40.
TABLE_COUNTS = 512
# poisson_noise's levels are 2^0 .. 2^8 (1 to 256 distinct codes).
LEVEL_EXPONENTS = 9


def _cdf_tables(vals):
  """(M, 256, TABLE_COUNTS) CDFs of Poisson(code / 255 * vals[m]) over counts 0 .. 511."""
  lam = jnp.arange(256, dtype=jnp.float32)[None, :, None] / 255.0 * vals[:, None, None]
  counts = jnp.arange(TABLE_COUNTS, dtype=jnp.float32)
  return jnp.cumsum(jnp.exp(_log_pmf(counts, lam)), axis=-1)


def sample_poisson_codes(key, codes, vals):
  """Poisson(codes / 255 * vals) counts as float32: the means poisson_noise draws from.

  codes: (N, ..., P) int 8-bit codes; vals: (N, P) the levels of each sample and plane, powers
  of two from 1 to 256 (_levels). These means take 9 x 256 values in all, so the count is an
  exact inverse CDF by table (float32 CDFs from the accurate log-pmf of sample_poisson's PTRS):
  one uniform and a 9-step binary search per pixel, where sample_poisson's inversion passes over
  the whole image once per round while any dark pixel still searches (poisson_noise on a
  12 x 384 x 384 canvas: 7.0 s CPU with sample_poisson, 2.2 s with a table per sample and plane;
  `python -m benchmarks.degradations stages`). One table for every sample keeps the searched
  memory at 4.7 MB, whatever the batch. key: one, or one per sample (N,).
  """
  n, planes = codes.shape[0], codes.shape[-1]
  tables = _cdf_tables(2.0 ** jnp.arange(LEVEL_EXPONENTS, dtype=jnp.float32)).reshape(-1)
  u = _draw(jax.random.uniform, key, codes.shape)
  exponent = jnp.round(jnp.log2(vals)).astype(jnp.int32)
  row = exponent.reshape((n,) + (1,) * (codes.ndim - 2) + (planes,))
  base = (row * 256 + codes) * TABLE_COUNTS
  # The first count whose CDF reaches u; the last one where rounding keeps the CDF below it.
  low = jnp.zeros(codes.shape, jnp.int32)
  high = jnp.full(codes.shape, TABLE_COUNTS - 1, jnp.int32)
  for _ in range(TABLE_COUNTS.bit_length() - 1):
    mid = (low + high) // 2
    reached = tables[base + mid] >= u
    low, high = jnp.where(reached, low, mid + 1), jnp.where(reached, mid, high)
  return low.astype(jnp.float32)


def poisson_noise(key, images, scale, gray, mask=None):
  """The noise field of BasicSR's generate_poisson_noise_pt; mask limits the level count to each
  sample's valid region (a canvas). key: one key, or one per sample (N,)."""
  n = images.shape[0]
  if mask is None:
    mask = jnp.ones(images.shape[:3] + (1,), jnp.float32)
  luma = sum(w * images[..., i:i + 1] for i, w in enumerate(GRAY_WEIGHTS))
  codes = _codes(jnp.concatenate([images, luma], axis=-1))
  colour_vals, gray_vals = _levels(codes[..., :3], mask), _levels(codes[..., 3:], mask)
  # One sampler call for colour and gray.
  plane_vals = jnp.stack([colour_vals] * 3 + [gray_vals], axis=-1)
  counts = sample_poisson_codes(key, codes, plane_vals)
  levels = codes.astype(jnp.float32) / 255.0
  field = counts / plane_vals[:, None, None, :] - levels
  colour, gray_field = field[..., :3], field[..., 3:]
  gray = _per_sample(gray, n)
  return (colour * (1 - gray) + gray_field * gray) * _per_sample(scale, n)


def add_gaussian_noise(key, images, sigma, gray=False, clip=True):
  out = images + gaussian_noise(key, images, sigma, gray)
  return jnp.clip(out, 0, 1) if clip else out


def add_poisson_noise(key, images, scale, gray=False, clip=True):
  out = images + poisson_noise(key, images, scale, gray)
  return jnp.clip(out, 0, 1) if clip else out


NOISE_UNIFORMS = 3


def noise_params_from_uniforms(u, noise_cfg):
  """random_noise_params from u (n, NOISE_UNIFORMS) of U[0, 1)."""
  between = lambda v, bounds: bounds[0] + (bounds[1] - bounds[0]) * v
  return dict(sigma=between(u[:, 0], noise_cfg.gaussian_sigma),
              poisson_scale=between(u[:, 1], noise_cfg.poisson_scale),
              gray=u[:, 2] < noise_cfg.gray_prob)


def random_noise_params(key, n, noise_cfg):
  """Per-sample draws: sigma U[noise_cfg.gaussian_sigma], Poisson scale U[noise_cfg.poisson_scale],
  gray with p = noise_cfg.gray_prob."""
  return noise_params_from_uniforms(jax.random.uniform(key, (n, NOISE_UNIFORMS)), noise_cfg)


def random_add_gaussian_noise(key, images, sigma_range, gray_prob):
  k_p, k_n = jax.random.split(key)
  p = random_noise_params(k_p, images.shape[0], _Cfg(sigma_range, (1, 1), gray_prob))
  return add_gaussian_noise(k_n, images, p["sigma"], p["gray"])


def random_add_poisson_noise(key, images, scale_range, gray_prob):
  k_p, k_n = jax.random.split(key)
  p = random_noise_params(k_p, images.shape[0], _Cfg((1, 1), scale_range, gray_prob))
  return add_poisson_noise(k_n, images, p["poisson_scale"], p["gray"])


class _Cfg:
  def __init__(self, gaussian_sigma, poisson_scale, gray_prob):
    self.gaussian_sigma, self.poisson_scale, self.gray_prob = (gaussian_sigma, poisson_scale,
                                                               gray_prob)
