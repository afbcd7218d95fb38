"""The DISTS module's pieces: L2 pooling, tap sizes, the smallest image, parameters, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from esrgan_jax.models.dists import CHANNELS, DISTS, NUM_CHANNELS, l2_pool, min_image_size
from esrgan_jax.models.dists import tap_sides
from esrgan_jax.weights.dists import dists_param_shapes
from reference import torch_dists
from tests.dists_files import random_vgg16_features


def test_l2_pool_matches_the_reference():
  x = np.random.default_rng(0).normal(size=(2, 9, 6, 5)).astype(np.float32)
  expected = torch_dists.l2_pool(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
  got = l2_pool(jnp.asarray(x))
  assert got.shape == (2, 5, 3, 5)
  np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6, atol=1e-7)


def test_tap_sides_and_the_smallest_image_follow_the_reference():
  reference = torch_dists.ReferenceDISTS(random_vgg16_features(0), torch.ones(NUM_CHANNELS),
                                         torch.ones(NUM_CHANNELS))
  size = min_image_size()
  assert size == 17
  with torch.no_grad():
    for side in (size - 1, size, 23):
      maps = reference.feature_maps(torch.zeros(1, 3, side, side + 1))
      assert [m.shape[1] for m in maps] == list(CHANNELS)
      assert tuple(m.shape[2] for m in maps[1:]) == tap_sides(side)
  # One pixel below, relu5_3 is 1x1 (no variance to compare); at the size, 2x2.
  assert tap_sides(size - 1)[-1] == 1 and tap_sides(size)[-1] == 2


def test_param_shapes_and_finite_gradients():
  shapes = dists_param_shapes()
  assert shapes["alpha"] == shapes["beta"] == (NUM_CHANNELS,) == (1475,)
  assert sorted(shapes["backbone"]) == sorted(f"conv{b}_{i}" for b, n in enumerate(
      (2, 2, 3, 3, 3), 1) for i in range(1, n + 1))
  assert shapes["backbone"]["conv5_3"] == {"kernel": (3, 3, 512, 512), "bias": (512,)}
  rng = np.random.default_rng(1)
  x0 = rng.uniform(size=(1, 17, 20, 3)).astype(np.float32)
  x1 = np.clip(x0 + rng.normal(0, 0.1, x0.shape), 0, 1).astype(np.float32)
  module = DISTS()
  params = jax.jit(module.init)(jax.random.key(0), x0, x1)["params"]
  value_and_grad = jax.jit(jax.value_and_grad(
      lambda x, y: module.apply({"params": params}, x, y).sum()))
  value, grad = value_and_grad(x0, x1)
  assert float(value) > 0 and np.all(np.isfinite(grad)) and np.any(grad != 0)
  # Identical images too: every square root and ratio keeps its epsilon there.
  value, grad = value_and_grad(x0, x0)
  assert abs(float(value)) < 1e-6 and np.all(np.isfinite(grad))
