"""The second-order pipeline: draw statistics against the recipe, determinism, one compilation."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from configs.realesrgan_degradation import get_degradation_config
from esrgan_jax.data import degradations as deg
from esrgan_jax.data.degradations import second_order

CONFIG = get_degradation_config()
GT = np.clip(np.linspace(0, 1, 64)[None, :, None, None] * np.ones((4, 64, 64, 3)) +
             np.random.default_rng(0).normal(0, 0.05, (4, 64, 64, 3)), 0, 1).astype(np.float32)


def _degrade(seed, step, gt, slots):
  return deg.degrade_batch(seed, step, gt, slots, CONFIG)


DEGRADE = jax.jit(_degrade)
SAMPLE_PARAMS = jax.jit(lambda key, slots: second_order.sample_params(
    key, second_order.sample_keys_for(key, slots), CONFIG))


def _within(count, n, p, se=4.0):
  sd = math.sqrt(n * p * (1 - p))
  assert abs(count - n * p) <= se * sd + 1, (count, n, p)


def test_one_compilation_same_lr_on_any_split_and_after_resume():
  slots = jnp.arange(4)
  first = [np.asarray(DEGRADE(7, step, GT, slots)) for step in range(20)]
  assert DEGRADE._cache_size() == 1  # 20 steps of different draws: one program.
  lr = first[0]
  assert lr.shape == (4, 16, 16, 3) and lr.min() >= 0 and lr.max() <= 1
  np.testing.assert_allclose(lr * 255, np.round(lr * 255), atol=1e-4)
  # The vertical ramp survives every degradation: top rows darker than bottom rows.
  assert np.all(lr[:, :4].mean(axis=(1, 2, 3)) < lr[:, -4:].mean(axis=(1, 2, 3)))
  assert not np.array_equal(first[0], first[1])
  # What two devices do, slots 0-1 and 2-3 apart: their draws equal the whole batch's ...
  key = second_order.batch_key(7, 5)
  whole = SAMPLE_PARAMS(key, slots)
  halves = [SAMPLE_PARAMS(key, jnp.arange(a, a + 2)) for a in (0, 2)]
  jax.tree.map(lambda w, a, b: np.testing.assert_array_equal(
      jax.random.key_data(w) if jax.dtypes.issubdtype(w.dtype, jax.dtypes.prng_key) else w,
      np.concatenate([jax.random.key_data(x) if jax.dtypes.issubdtype(
          x.dtype, jax.dtypes.prng_key) else x for x in (a, b)])), whole, *halves)
  # ... and a sample's LR depends on its own GT and slot only, not on its place in the batch or
  # its neighbours (same program: the batch shape is unchanged).
  order = np.array([2, 3, 0, 1])
  moved = np.asarray(DEGRADE(7, 5, GT[order], jnp.asarray(order)))
  np.testing.assert_array_equal(moved, first[5][order])
  # A resumed run (same seed and step) gets the same LR.
  np.testing.assert_array_equal(np.asarray(DEGRADE(7, 13, GT, slots)), first[13])
  assert DEGRADE._cache_size() == 1


def _draws(num_batches, batch, config):
  def one(key):
    key = jax.random.fold_in(jax.random.key(0, impl="threefry2x32"), key)
    params = second_order.sample_params(key, second_order.sample_keys_for(key, jnp.arange(batch)),
                                    config)
    return {k: v for k, v in params.items() if k not in ("noise1_key", "noise2_key")}
  return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jnp.arange(num_batches)))


def test_draws_match_the_recipe():
  nb, b = 1000, 2
  p = _draws(nb, b, CONFIG)
  n = nb * b
  # Batch-level choices are one per batch, shared by its samples.
  for name in ("gaussian1", "blur2", "gaussian2", "resize_first", "final_mode"):
    assert np.all(p[name][:, 0] == p[name][:, 1]), name
  for stage in ("resize1", "resize2"):
    cfg, r = CONFIG[stage], p[stage]
    kind, scale = r["kind"][:, 0], r["scale"][:, 0]
    for k, prob in enumerate(cfg.prob):
      _within(np.sum(kind == k), nb, prob)
    up, down = scale[kind == 0], scale[kind == 1]
    assert cfg.up[0] <= up.min() and up.max() <= cfg.up[1] and up.max() > cfg.up[1] - 0.05
    assert cfg.down[0] <= down.min() < cfg.down[0] + 0.05 and down.max() <= 1
    assert np.all(scale[kind == 2] == 1)
    for m in range(3):
      _within(np.sum(r["mode"][:, 0] == m), nb, 1 / 3)
  _within(np.sum(p["gaussian1"][:, 0]), nb, CONFIG.noise1.gaussian_prob)
  _within(np.sum(p["gaussian2"][:, 0]), nb, CONFIG.noise2.gaussian_prob)
  _within(np.sum(p["blur2"][:, 0]), nb, CONFIG.second_blur_prob)
  _within(np.sum(p["resize_first"][:, 0]), nb, CONFIG.final_resize_first_prob)
  for stage in ("noise1", "noise2"):
    cfg, d = CONFIG[stage], p[stage]
    _within(np.sum(d["gray"]), n, cfg.gray_prob)
    for name, rng in (("sigma", cfg.gaussian_sigma), ("poisson_scale", cfg.poisson_scale)):
      v = d[name]
      assert rng[0] <= v.min() < rng[0] + 0.05 * (rng[1] - rng[0])
      assert rng[1] - 0.05 * (rng[1] - rng[0]) < v.max() <= rng[1]
      assert abs(v.mean() - sum(rng) / 2) < 4 * (rng[1] - rng[0]) / math.sqrt(12 * n)
  for q in (p["jpeg1_quality"], p["jpeg2_quality"]):
    assert 30 <= q.min() < 31 and 94 < q.max() <= 95
  _within(np.sum(p["sinc_params"]["applied"]), n, CONFIG.final_sinc_prob)
  cut = p["sinc_params"]["cutoff"]
  assert math.pi / 3 <= cut.min() and cut.max() <= math.pi
  _within(np.sum(p["kernel1_params"]["kind"] == 6), n, CONFIG.kernel1.sinc_prob)
  _within(np.sum(p["kernel2_params"]["kind"] == 0), n, 0.9 * CONFIG.kernel2.kernel_prob[0])
  assert p["kernel1_params"]["sigma_x"].max() > 2.9 and p["kernel2_params"]["sigma_x"].max() <= 1.5


def test_per_sample_choices_differ_within_a_batch():
  config = get_degradation_config()
  config.per_sample_choices = True
  p = _draws(100, 2, config)
  assert np.any(p["resize1"]["scale"][:, 0] != p["resize1"]["scale"][:, 1])
  _within(np.sum(p["gaussian1"]), 200, 0.5)


def test_a_callers_sharpened_gt_replaces_the_pipelines_own():
  sharpen = jax.jit(lambda gt: deg.usm_sharp(gt, **CONFIG.usm))
  given = jax.jit(lambda gt, sharpened: deg.degrade_batch(7, 3, gt, jnp.arange(4), CONFIG,
                                                          sharpened=sharpened))
  own = np.asarray(DEGRADE(7, 3, GT, jnp.arange(4)))
  np.testing.assert_array_equal(np.asarray(given(GT, sharpen(GT))), own)
  # It is what the pipeline blurs first: an unsharpened one gives another LR.
  assert not np.array_equal(np.asarray(given(GT, GT)), own)
