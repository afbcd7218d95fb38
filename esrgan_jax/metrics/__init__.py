"""Image quality metrics: full-reference PSNR / SSIM (BasicSR's convention) and no-reference NIQE.

`python -m esrgan_jax.metrics --sr SR_DIR --hr HR_DIR` measures a folder of results. The set-level
FID, KID and IS are in `esrgan_jax.metrics.fid` and LPIPS in `esrgan_jax.metrics.lpips` (both
import Flax and the weight loaders, so they are not imported here).
"""

from esrgan_jax.metrics.naturalness import (NiqeParams, fit_niqe_params, load_niqe_params, niqe,
                                     save_niqe_params)
from esrgan_jax.metrics.psnr_ssim import psnr, rgb_to_y, ssim

__all__ = ["NiqeParams", "fit_niqe_params", "load_niqe_params", "niqe", "psnr", "rgb_to_y",
           "save_niqe_params", "ssim"]
