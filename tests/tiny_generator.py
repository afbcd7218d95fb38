"""A tiny RRDBNet with random parameters, for tests that run the generator (tiling, upscaler)."""

import jax
import jax.numpy as jnp
import numpy as np

from esrgan_jax.models import RRDBNet
from esrgan_jax.weights.generator import arch_of, save_generator


def random_params(model, seed=0):
  """PyTorch-default-like random parameters, drawn with NumPy: `model.init` compiles the random
  initialisers, which costs tens of seconds on a busy CPU, for no benefit in these tests."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))["params"]
  rng = np.random.RandomState(seed)

  def draw(leaf):
    bound = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else leaf.shape[0])
    return rng.uniform(-bound, bound, leaf.shape).astype(np.float32)

  return jax.tree.map(draw, shapes)


def tiny_generator(scale=4, num_block=1, seed=0):
  """(RRDBNet with 8 features and growth 4, its random params)."""
  model = RRDBNet(scale=scale, num_feat=8, num_block=num_block, num_grow_ch=4)
  return model, random_params(model, seed)


def saved_tiny_checkpoint(tmp_path_factory, scale=4) -> str:
  """A converted-checkpoint directory of tiny_generator(scale), for command tests' fixtures."""
  model, params = tiny_generator(scale=scale, num_block=1, seed=0)
  path = str(tmp_path_factory.mktemp("ckpt") / f"tiny_x{scale}")
  save_generator(path, params, arch_of(model))
  return path
