"""The one jitted generator apply, shared by evaluation, upscaling and anything else that runs G.

`jax.jit` keyed on the (hashable, frozen) linen module compiles once per (architecture, dtype,
input shape) for the whole process: every checkpoint of one architecture and every evaluation of a
training run reuse the same programs, since the params are an argument, not baked-in constants.

On the CPU, SRVGGNetCompact's program is compiled with XLA's own YNNPACK convolutions, which the
trainer's default flags take away for the sake of weight gradients (runtime/xla_flags.py): a
forward pass has none, and Compact's inference ran 1.06-1.13x faster with them, its outputs
within 2e-7 of the Eigen ones (benchmarks/RESULTS.md). RRDBNet and SPAN keep the process's flags:
their outputs would move by more than 1e-6 (2.4e-6 and 2.7e-5 on the benchmark's random weights),
and SPAN measured no faster.
"""

import jax
import jax.numpy as jnp

from esrgan_jax.models import srvgg
from esrgan_jax.runtime import xla_flags

LIBRARY_CONVOLUTION_MODELS = (srvgg.SRVGGNetCompact,)


def _apply_generator(generator, params, images: jax.Array) -> jax.Array:
  return generator.apply({"params": params}, images).astype(jnp.float32)


_PROCESS_FLAGS = jax.jit(_apply_generator, static_argnums=0)
_LIBRARY_CONVOLUTIONS = jax.jit(_apply_generator, static_argnums=0,
                                compiler_options=xla_flags.LIBRARY_CONVOLUTIONS)
JITTED = (_PROCESS_FLAGS, _LIBRARY_CONVOLUTIONS)


def jitted_apply(generator):
  """The jitted function of JITTED that runs `generator` (called as f(generator, params, x))."""
  if (isinstance(generator, LIBRARY_CONVOLUTION_MODELS) and jax.default_backend() == "cpu"
      and xla_flags.library_convolutions_taken_away()):
    return _LIBRARY_CONVOLUTIONS
  return _PROCESS_FLAGS


def apply_generator(generator, params, images: jax.Array) -> jax.Array:
  """NHWC float [0, 1] -> NHWC float32, unclipped (callers round and clip as they need)."""
  return jitted_apply(generator)(generator, params, images)


@jax.jit
def to_uint8(images: jax.Array) -> jax.Array:
  """data/images.to_pixels(x, uint8) on the device: round(clip(x, 0, 1) * 255), halves to even,
  in float32 as there, so the same bytes; a quarter of the float output's transfer back, and no
  host pass over it (the video path, where the host must keep up with the accelerator)."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def clear_cache() -> None:
  for jitted in JITTED:
    jitted.clear_cache()


def cache_size() -> int:
  """Compiled programs held, over both jitted functions."""
  return sum(jitted._cache_size() for jitted in JITTED)  # pylint: disable=protected-access
