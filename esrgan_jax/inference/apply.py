"""The one jitted generator apply, shared by evaluation, upscaling and anything else that runs G.

`jax.jit` keyed on the (hashable, frozen) linen module compiles once per (architecture, dtype,
input shape) for the whole process: every checkpoint of one architecture and every evaluation of a
training run reuse the same programs, since the params are an argument, not baked-in constants.
"""

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnums=0)
def apply_generator(generator, params, images: jax.Array) -> jax.Array:
  """NHWC float [0, 1] -> NHWC float32, unclipped (callers round and clip as they need)."""
  return generator.apply({"params": params}, images).astype(jnp.float32)
