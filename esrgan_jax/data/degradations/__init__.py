"""Real-ESRGAN's second-order degradations as pure, jittable jax.numpy functions on NHWC [0, 1].

Names follow BasicSR's so that its users find them; `degrade` / `degrade_batch` run the whole
pipeline (see second_order.py for how random resizes keep one compiled program).
"""

from esrgan_jax.data.degradations.filters import filter2d, usm_sharp
from esrgan_jax.data.degradations.jpeg import jpeg_compress
from esrgan_jax.data.degradations.kernels import (bivariate_gaussian,
                                                  bivariate_generalized_gaussian,
                                                  bivariate_plateau, circular_lowpass_kernel,
                                                  random_kernel, random_sinc_kernel)
from esrgan_jax.data.degradations.noise import (add_gaussian_noise, add_poisson_noise,
                                                gaussian_noise, poisson_noise,
                                                random_add_gaussian_noise,
                                                random_add_poisson_noise)
from esrgan_jax.data.degradations.second_order import (apply_degradations, batch_key, degrade,
                                                       degrade_batch, frozen_table,
                                                       image_degrader, sample_params)
from esrgan_jax.data.degradations.resampling import resize, resize_scale_factor
