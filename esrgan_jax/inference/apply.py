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


@jax.jit
def to_uint8(images: jax.Array) -> jax.Array:
  """data/images.to_pixels(x, uint8) on the device: round(clip(x, 0, 1) * 255), halves to even,
  in float32 as there, so the same bytes; a quarter of the float output's transfer back, and no
  host pass over it (the video path, where the host must keep up with the accelerator)."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)
