"""The LPIPS metric of evaluation: one SR image against its HR image, jitted once per shape.

  metric = LpipsMetric.from_dir(config.eval.lpips_weights)   # written by convert --lpips
  value = metric(sr_uint8, hr_uint8)                          # HxWx3 each
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from esrgan_jax.models.lpips import LPIPS, min_image_size
from esrgan_jax.weights import lpips as lpips_weights


def _as_unit_images(images, name: str) -> jax.Array:
  """uint8 [0, 255] or float [0, 1], NHWC or HWC -> float32 NHWC in [-1, 1]."""
  dtype = np.dtype(images.dtype)
  if dtype == np.uint8:
    images = jnp.asarray(images, jnp.float32) / 255.0
  elif np.issubdtype(dtype, np.floating):
    images = jnp.asarray(images, jnp.float32)
  else:
    raise ValueError(f"lpips_distance: {name} must be uint8 or float in [0, 1], got {dtype}")
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"lpips_distance: {name} must be RGB, NHWC or HWC, got shape {images.shape}")
  return images * 2.0 - 1.0


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: LPIPS, params, x0, x1) -> jax.Array:
  return module.apply({"params": params}, x0, x1)


def lpips_distance(module: LPIPS, params, img1, img2) -> np.ndarray:
  """Per-image LPIPS of two RGB batches (NHWC or one HWC image), uint8 or float in [0, 1]."""
  x0, x1 = _as_unit_images(img1, "img1"), _as_unit_images(img2, "img2")
  if x0.shape != x1.shape:
    raise ValueError(f"lpips_distance: images differ in shape, {x0.shape} vs {x1.shape}")
  smallest = min_image_size(module.net)
  if min(x0.shape[1:3]) < smallest:
    raise ValueError(f"lpips_distance: LPIPS-{module.net} needs images of at least "
                     f"{smallest}x{smallest} pixels, got {x0.shape[1]}x{x0.shape[2]}")
  return np.asarray(_apply(module, params, x0, x1))


class LpipsMetric:
  """LPIPS of one SR image against its HR image, with the weights on the first local device."""

  def __init__(self, module: LPIPS, params):
    self.module = module
    self.params = jax.device_put(params, jax.local_devices()[0])

  @classmethod
  def from_dir(cls, path: str | os.PathLike) -> "LpipsMetric":
    return cls(*lpips_weights.load_lpips_dir(path))

  @property
  def name(self) -> str:
    return f"lpips_{self.module.net}"

  def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
    return float(lpips_distance(self.module, self.params, sr, hr)[0])
