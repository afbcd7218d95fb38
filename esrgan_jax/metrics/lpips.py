"""The LPIPS metric of evaluation: one SR image against its HR image, jitted once per shape.

  metric = LpipsMetric.from_dir(config.eval.lpips_weights)   # written by convert --lpips
  value = metric(sr_uint8, hr_uint8)                          # HxWx3 each
"""

import numpy as np

from esrgan_jax.metrics import image_pairs
from esrgan_jax.models.lpips import LPIPS, min_image_size
from esrgan_jax.weights import lpips as lpips_weights


# Kept under its old name: tests count this jitted function's compilations.
_apply = image_pairs.apply_pair


def lpips_distance(module: LPIPS, params, img1, img2) -> np.ndarray:
  """Per-image LPIPS of two RGB batches (NHWC or one HWC image), uint8 or float in [0, 1]."""
  x0, x1 = image_pairs.unit_pair(img1, img2, "lpips_distance", f"LPIPS-{module.net}",
                                 min_image_size(module.net))
  # LPIPS takes [-1, 1].
  return np.asarray(_apply(module, params, x0 * 2.0 - 1.0, x1 * 2.0 - 1.0))


class LpipsMetric(image_pairs.PairMetric):
  """LPIPS of one SR image against its HR image, with the weights on the first local device."""

  load_dir = staticmethod(lpips_weights.load_lpips_dir)
  distance = staticmethod(lpips_distance)

  @property
  def name(self) -> str:
    return f"lpips_{self.module.net}"
