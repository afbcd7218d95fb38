"""The DISTS metric of evaluation: one SR image against its HR image, jitted once per shape.

  metric = DistsMetric.from_dir(config.eval.dists_weights)   # written by convert --dists
  value = metric(sr_uint8, hr_uint8)                          # HxWx3 each; lower is better

Images are compared at their own size: the package resizes only when asked (its `prepare_image`
has resize=False by default), and shrinking an SR result would blur away the textures DISTS is
there to judge (docs/design.md, "DISTS").
"""

import numpy as np

from esrgan_jax.metrics import image_pairs
from esrgan_jax.models.dists import DISTS, min_image_size
from esrgan_jax.weights import dists as dists_weights


def dists_distance(module: DISTS, params, img1, img2) -> np.ndarray:
  """Per-image DISTS of two RGB batches (NHWC or one HWC image), uint8 or float in [0, 1]."""
  x0, x1 = image_pairs.unit_pair(img1, img2, "dists_distance", "DISTS", min_image_size())
  return np.asarray(image_pairs.apply_pair(module, params, x0, x1))


class DistsMetric(image_pairs.PairMetric):
  """DISTS of one SR image against its HR image, with the weights on the first local device."""

  name = "dists"
  load_dir = staticmethod(dists_weights.load_dists_dir)
  distance = staticmethod(dists_distance)
