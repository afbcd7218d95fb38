"""Real-ESRGAN's second-order degradation, every figure from options/train_realesrgan_x4plus.yml
(and realesrgan/data/realesrgan_dataset.py / realesrgan/models/realesrgan_model.py for the fixed
ones), consumed by esrgan_jax.data.degradations.degrade."""

import math

import ml_collections


def kernel_config(sigma):
  return ml_collections.ConfigDict(dict(
      sizes=(7, 9, 11, 13, 15, 17, 19, 21),  # dataset: kernel_range = [2 * v + 1 for v in 3..10]
      sinc_prob=0.1,  # yml: sinc_prob / sinc_prob2
      # yml: kernel_list ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
      # 'plateau_aniso'] with kernel_prob / kernel_prob2
      kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
      sigma=sigma,  # yml: blur_sigma [0.2, 3] / blur_sigma2 [0.2, 1.5]
      rotation=(-math.pi, math.pi),  # dataset: [-math.pi, math.pi]
      betag=(0.5, 4.0),  # yml: betag_range / betag_range2
      betap=(1.0, 2.0),  # yml: betap_range / betap_range2
      sinc_cutoff_small=(math.pi / 3, math.pi),  # dataset: omega_c for kernel_size < 13
      sinc_cutoff_large=(math.pi / 5, math.pi),  # dataset: omega_c otherwise
  ))


def get_degradation_config(scale: int = 4) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      scale=scale,  # yml: scale 4 (x2plus: 2)
      usm=dict(weight=0.5, radius=50, threshold=10),  # USMSharp() defaults, used by the model
      kernel1=kernel_config((0.2, 3.0)),
      resize1=dict(
          prob=(0.2, 0.7, 0.1),  # yml: resize_prob [up, down, keep]
          up=(1.0, 1.5),  # yml: resize_range [0.15, 1.5], upper part
          down=(0.15, 1.0),  # lower part
          mode_prob=(1 / 3, 1 / 3, 1 / 3)),  # model: random.choice(['area', 'bilinear', 'bicubic'])
      noise1=dict(
          gaussian_prob=0.5,  # yml: gaussian_noise_prob
          gaussian_sigma=(1.0, 30.0),  # yml: noise_range (in 0-255 units)
          poisson_scale=(0.05, 3.0),  # yml: poisson_scale_range
          gray_prob=0.4),  # yml: gray_noise_prob
      jpeg1=(30.0, 95.0),  # yml: jpeg_range
      second_blur_prob=0.8,  # yml: second_blur_prob
      kernel2=kernel_config((0.2, 1.5)),
      resize2=dict(
          prob=(0.3, 0.4, 0.3),  # yml: resize_prob2
          up=(1.0, 1.2),  # yml: resize_range2 [0.3, 1.2]
          down=(0.3, 1.0),
          mode_prob=(1 / 3, 1 / 3, 1 / 3)),
      noise2=dict(
          gaussian_prob=0.5,  # yml: gaussian_noise_prob2
          gaussian_sigma=(1.0, 25.0),  # yml: noise_range2
          poisson_scale=(0.05, 2.5),  # yml: poisson_scale_range2
          gray_prob=0.4),  # yml: gray_noise_prob2
      jpeg2=(30.0, 95.0),  # yml: jpeg_range2
      final_resize_first_prob=0.5,  # model: np.random.uniform() < 0.5 -> resize + sinc, then JPEG
      final_mode_prob=(1 / 3, 1 / 3, 1 / 3),
      final_sinc_prob=0.8,  # yml: final_sinc_prob
      final_sinc_sizes=(7, 9, 11, 13, 15, 17, 19, 21),  # dataset: kernel_range
      final_sinc_cutoff=(math.pi / 3, math.pi),  # dataset: omega_c U[pi/3, pi]
      # False: the resize scale and mode, the noise type, the second blur and the final order are
      # drawn once per (global) batch, as the recipe does; True: per sample (same program).
      per_sample_choices=False,
  ))
