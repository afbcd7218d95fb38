"""noise.sample_poisson against SciPy's Poisson law: moments, chi-square, keying."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from esrgan_jax.data.degradations import noise

# Both samplers and their seam (inversion below 10, PTRS from 10), BasicSR's largest mean (256)
# and beyond.
LAMS = (0.0, 0.3, 0.9, 3.7, 9.99, 10.0, 12.5, 37.0, 256.0, 1000.0)
DRAWS = 60000
sample = jax.jit(noise.sample_poisson)


def _keys(n, seed=0):
  return jax.random.split(jax.random.key(seed, impl="threefry2x32"), n)


def _chi_square_pvalue(counts, lam):
  """Pearson's test over the bins with expected count >= 5, tails merged into the end bins."""
  n = counts.size
  k = np.arange(int(counts.max()) + 2)
  expected = stats.poisson.pmf(k, lam) * n
  lo, hi = np.flatnonzero(expected >= 5)[[0, -1]]
  observed = np.bincount(counts.astype(np.int64), minlength=k.size)[:k.size].astype(float)
  obs = observed[lo:hi + 1].copy()
  exp = expected[lo:hi + 1].copy()
  obs[0] += observed[:lo].sum()
  exp[0] = stats.poisson.cdf(lo, lam) * n
  obs[-1] += observed[hi + 1:].sum() + np.sum(counts > k[-1])
  exp[-1] = stats.poisson.sf(hi - 1, lam) * n
  return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


def test_counts_follow_the_poisson_law_at_every_mean():
  lam = jnp.asarray(np.repeat(np.array(LAMS, np.float32)[:, None], DRAWS, axis=1))
  counts = np.asarray(sample(_keys(len(LAMS)), lam))
  assert counts.dtype == np.float32 and np.all(counts == np.round(counts)) and counts.min() >= 0
  assert np.all(counts[0] == 0)
  for row, mean in zip(counts[1:], LAMS[1:]):
    se = np.sqrt(mean / DRAWS)
    assert abs(row.mean() - mean) < 4.5 * se, (mean, row.mean())
    # The sample variance's standard error is about mean sqrt(2 / n) (+ the fourth cumulant).
    assert abs(row.var() - mean) < 4.5 * np.sqrt((2 * mean**2 + mean) / DRAWS), (mean, row.var())
    assert _chi_square_pvalue(row, mean) > 1e-4, mean


def test_one_key_draws_the_same_law_over_any_shape():
  lam = jnp.asarray(np.stack([np.full((40, 50), v, np.float32) for v in (0.9, 256.0, 5.0)]))
  counts = np.asarray(sample(jax.random.key(4, impl="threefry2x32"), lam))
  assert counts.shape == (3, 40, 50)
  for row, mean in zip(counts, (0.9, 256.0, 5.0)):
    assert _chi_square_pvalue(row.ravel(), mean) > 1e-4, mean
  np.testing.assert_array_equal(counts, np.asarray(
      sample(jax.random.key(4, impl="threefry2x32"), lam)))


def test_a_sample_depends_on_its_own_key_and_mean_only():
  keys = _keys(3, seed=9)
  lam = np.stack([np.full((8, 8, 4), v, np.float32) for v in (3.0, 150.0, 40.0)])
  lam[0, :4] = 600.0  # a mix of both samplers inside one sample
  together = np.asarray(sample(keys, jnp.asarray(lam)))
  for i in range(3):
    alone = np.asarray(sample(keys[i:i + 1], jnp.asarray(lam[i:i + 1])))
    np.testing.assert_array_equal(alone[0], together[i])
  # Neighbours that need many more (or no) rounds of either loop change nothing.
  neighbours = lam.copy()
  neighbours[1], neighbours[2] = 0.0, 5000.0
  np.testing.assert_array_equal(np.asarray(sample(keys, jnp.asarray(neighbours)))[0],
                                together[0])
  assert not np.array_equal(together[1], np.asarray(sample(_keys(3, seed=10), lam))[1])


def test_log_pmf_keeps_float32_accuracy_at_large_means():
  k = np.arange(0, 1400, dtype=np.float32)
  for lam in (10.0, 37.3, 256.0, 1000.0):
    want = stats.poisson.logpmf(k, lam)
    near = want > -40  # every k a rejection test can meet with any chance
    # pylint: disable-next=protected-access
    got = np.asarray(noise._log_pmf(jnp.asarray(k), jnp.float32(lam)))
    np.testing.assert_allclose(got[near], want[near], atol=5e-5)


def test_buffer_passes_do_not_change_the_draws(monkeypatch):
  """However many passes PTRS's later rounds take through its buffer, every draw stays the same:
  they are hashed from (key, round, position)."""
  keys = _keys(2, seed=3)
  lam = jnp.asarray(np.random.default_rng(1).uniform(0, 300, (2, 4000)).astype(np.float32))
  default = np.asarray(sample(keys, lam))
  monkeypatch.setattr(noise, "_PTRS_BUFFER_FRACTION", 10**6)  # a buffer of 16: many passes
  np.testing.assert_array_equal(np.asarray(jax.jit(noise.sample_poisson)(keys, lam)), default)


# (code, vals) pairs poisson_noise meets: means code / 255 * vals from 0 to 256, both sides of
# the seam of sample_poisson's two samplers.
CODE_CASES = ((0, 256), (1, 2), (40, 16), (128, 16), (250, 8), (9, 256), (200, 64), (255, 256))


def test_table_sampler_follows_the_poisson_law_of_each_code():
  codes = np.stack([np.full((DRAWS // 2, 1), c, np.int32) for c, _ in CODE_CASES])
  vals = np.array([[v] for _, v in CODE_CASES], np.float32)
  counts = np.asarray(jax.jit(noise.sample_poisson_codes)(_keys(len(CODE_CASES)),
                                                          jnp.asarray(codes), jnp.asarray(vals)))
  assert counts.dtype == np.float32 and np.all(counts == np.round(counts))
  assert np.all(counts[0] == 0)  # mean 0
  for row, (code, v) in zip(counts[1:], CODE_CASES[1:]):
    mean = code / 255 * v
    n = row.size
    assert abs(row.mean() - mean) < 4.5 * np.sqrt(mean / n), (code, v, row.mean())
    assert abs(row.var() - mean) < 4.5 * np.sqrt((2 * mean**2 + mean) / n), (code, v)
    assert _chi_square_pvalue(row.ravel(), mean) > 1e-4, (code, v)


def test_table_sampler_reads_each_planes_own_levels_and_its_samples_own_key():
  rng = np.random.default_rng(7)
  codes = jnp.asarray(rng.integers(0, 256, (3, 20, 30, 4)), jnp.int32)
  vals = jnp.asarray([[256, 256, 256, 2], [16, 16, 16, 64], [128, 128, 128, 128]], jnp.float32)
  keys = _keys(3, seed=5)
  counts = np.asarray(noise.sample_poisson_codes(keys, codes, vals))
  # Plane means: code / 255 * vals of its sample and plane.
  means = np.asarray(codes) / 255 * np.asarray(vals)[:, None, None, :]
  z = (counts - means).sum() / np.sqrt(means.sum())
  assert abs(z) < 4.5, z
  # Sample 1 alone, with its own key, draws what it drew in the batch.
  alone = np.asarray(noise.sample_poisson_codes(keys[1:2], codes[1:2], vals[1:2]))
  np.testing.assert_array_equal(alone[0], counts[1])
