"""What the learned full-reference metrics (LPIPS, DISTS) share: their inputs checked and made
float32 NHWC batches in [0, 1], one jitted apply of a (module, params) pair, compiled once per
module and shape, and the metric object evaluation holds (PairMetric: weights loaded from their
converted folder onto the first local device)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np


def unit_batch(images, caller: str, name: str) -> jax.Array:
  """uint8 [0, 255] or float [0, 1], NHWC or HWC -> float32 NHWC in [0, 1]; ValueError naming
  `caller` and the argument `name` otherwise."""
  dtype = np.dtype(images.dtype)
  if dtype == np.uint8:
    images = jnp.asarray(images, jnp.float32) / 255.0
  elif np.issubdtype(dtype, np.floating):
    images = jnp.asarray(images, jnp.float32)
  else:
    raise ValueError(f"{caller}: {name} must be uint8 or float in [0, 1], got {dtype}")
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"{caller}: {name} must be RGB, NHWC or HWC, got shape {images.shape}")
  return images


def unit_pair(img1, img2, caller: str, metric: str, smallest: int):
  """Both batches through unit_batch, of one shape and at least `smallest` pixels a side (what
  `metric`'s deepest features need)."""
  x0, x1 = unit_batch(img1, caller, "img1"), unit_batch(img2, caller, "img2")
  if x0.shape != x1.shape:
    raise ValueError(f"{caller}: images differ in shape, {x0.shape} vs {x1.shape}")
  if min(x0.shape[1:3]) < smallest:
    raise ValueError(f"{caller}: {metric} needs images of at least {smallest}x{smallest} "
                     f"pixels, got {x0.shape[1]}x{x0.shape[2]}")
  return x0, x1


@functools.partial(jax.jit, static_argnums=0)
def apply_pair(module, params, x0, x1) -> jax.Array:
  return module.apply({"params": params}, x0, x1)


class PairMetric:
  """One SR image against its HR image, with the weights on the first local device.

  A metric names two functions: `load_dir` (a folder written by convert -> (module, params)) and
  `distance` ((module, params, img1, img2) -> per-image values).
  """

  load_dir = None
  distance = None

  def __init__(self, module, params):
    self.module = module
    self.params = jax.device_put(params, jax.local_devices()[0])

  @classmethod
  def from_dir(cls, path: str | os.PathLike):
    return cls(*cls.load_dir(path))

  def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
    return float(self.distance(self.module, self.params, sr, hr)[0])
