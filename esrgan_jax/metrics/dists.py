"""The DISTS metric of evaluation: one SR image against its HR image, jitted once per shape.

  metric = DistsMetric.from_dir(config.eval.dists_weights)   # written by convert --dists
  value = metric(sr_uint8, hr_uint8)                          # HxWx3 each; lower is better

Images are compared at their own size: the package resizes only when asked (its `prepare_image`
has resize=False by default), and shrinking an SR result would blur away the textures DISTS is
there to judge (docs/design.md, "DISTS").
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from esrgan_jax.models.dists import DISTS, min_image_size
from esrgan_jax.weights import dists as dists_weights


def _as_unit_images(images, name: str) -> jax.Array:
  """uint8 [0, 255] or float [0, 1], NHWC or HWC -> float32 NHWC in [0, 1]."""
  dtype = np.dtype(images.dtype)
  if dtype == np.uint8:
    images = jnp.asarray(images, jnp.float32) / 255.0
  elif np.issubdtype(dtype, np.floating):
    images = jnp.asarray(images, jnp.float32)
  else:
    raise ValueError(f"dists_distance: {name} must be uint8 or float in [0, 1], got {dtype}")
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"dists_distance: {name} must be RGB, NHWC or HWC, got shape {images.shape}")
  return images


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: DISTS, params, x0, x1) -> jax.Array:
  return module.apply({"params": params}, x0, x1)


def dists_distance(module: DISTS, params, img1, img2) -> np.ndarray:
  """Per-image DISTS of two RGB batches (NHWC or one HWC image), uint8 or float in [0, 1]."""
  x0, x1 = _as_unit_images(img1, "img1"), _as_unit_images(img2, "img2")
  if x0.shape != x1.shape:
    raise ValueError(f"dists_distance: images differ in shape, {x0.shape} vs {x1.shape}")
  smallest = min_image_size()
  if min(x0.shape[1:3]) < smallest:
    raise ValueError(f"dists_distance: DISTS needs images of at least {smallest}x{smallest} "
                     f"pixels, got {x0.shape[1]}x{x0.shape[2]}")
  return np.asarray(_apply(module, params, x0, x1))


class DistsMetric:
  """DISTS of one SR image against its HR image, with the weights on the first local device."""

  name = "dists"

  def __init__(self, module: DISTS, params):
    self.module = module
    self.params = jax.device_put(params, jax.local_devices()[0])

  @classmethod
  def from_dir(cls, path: str | os.PathLike) -> "DistsMetric":
    return cls(*dists_weights.load_dists_dir(path))

  def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
    return float(dists_distance(self.module, self.params, sr, hr)[0])
