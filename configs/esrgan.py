"""Stage 2: the ESRGAN GAN stage, initialised from a stage-1 (PSNR) checkpoint.

Figures follow the paper (Sec. 4.1) and BasicSR's train_ESRGAN_x4.yml: Adam(1e-4, 0.9, 0.99) for G
and D, learning rate halved at 50k, 100k, 200k and 300k of 400k updates; G loss = perceptual
(VGG19 conv5_4 before ReLU, L1, weight 1) + 5e-3 * RaGAN + 1e-2 * L1; VGG-style discriminator on
128x128 patches. Every field and its default is in configs/default.py; this file sets what stage 2
changes. Set `--config.generator_init` to the stage-1 workdir.

Variants: `configs/esrgan.py:demo` runs the GAN stage on the bundled photographs on a CPU.
"""

import ml_collections

from configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.stage = "gan"
  num_steps = 400_000
  milestones = (50_000, 100_000, 200_000, 300_000)
  config.train.num_steps = num_steps
  config.optimizer_g = default.optimizer_config(1e-4, milestones, num_steps)
  config.optimizer_d = default.optimizer_config(1e-4, milestones, num_steps)
  config.loss.update(
      pixel_weight=1e-2,  # eta
      perceptual_weight=1.0,
      perceptual_layers={"conv5_4": 1.0},
      perceptual_criterion="l1",
      gan_weight=5e-3,  # lambda
  )
  if variant == "demo":
    default.apply_demo(config, num_steps=200, learning_rates={"optimizer_g": 1e-3})
    config.discriminator.num_feat = 16
    config.data.patch_size = 128  # the VGG-style discriminator takes 128x128 patches
    config.train.batch_size = 2
  elif variant:
    raise ValueError(f"configs/esrgan.py: unknown variant {variant!r} (known: 'demo')")
  return config
