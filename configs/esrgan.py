"""Stage 2: the ESRGAN GAN stage, initialised from a stage-1 (PSNR) checkpoint.

Figures follow the paper (Sec. 4.1) and BasicSR's train_ESRGAN_x4.yml: Adam(1e-4, 0.9, 0.99) for G
and D, learning rate halved at 50k, 100k, 200k and 300k of 400k updates; G loss = perceptual
(VGG19 conv5_4 before ReLU, L1, weight 1) + 5e-3 * RaGAN + 1e-2 * L1; VGG-style discriminator on
128x128 patches.

Variants: `configs/esrgan.py:demo` runs the GAN stage on the bundled photographs on a CPU.
"""

import ml_collections

from configs import esrgan_psnr


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = esrgan_psnr.common_config("gan", num_steps=400_000)
  # A stage-1 workdir (or checkpoint directory, or a generator converted from PyTorch). G starts
  # from its generator and the EMA copy from its EMA generator.
  config.generator_init = ""
  milestones = (50_000, 100_000, 200_000, 300_000)
  config.optimizer_g = esrgan_psnr.optimizer_config(1e-4, milestones, 400_000)
  config.optimizer_d = esrgan_psnr.optimizer_config(1e-4, milestones, 400_000)
  config.discriminator = ml_collections.ConfigDict(dict(
      name="vgg_style",  # or "unet_sn" (Real-ESRGAN's U-Net with spectral norm)
      num_feat=64,
  ))
  config.loss.update(
      pixel_weight=1e-2,  # eta
      perceptual_weight=1.0,
      perceptual_layers={"conv5_4": 1.0},  # pre-ReLU VGG19 features and their weights
      perceptual_criterion="l1",
      gan_weight=5e-3,  # lambda
      # torchvision VGG19 ImageNet weights converted by `python -m esrgan_jax.convert --vgg19`
      # (or the .pth itself, which needs torch). Empty: random VGG19 weights, with a warning.
      vgg19_weights="",
  )
  if variant == "demo":
    esrgan_psnr.apply_demo(config, num_steps=200)
    config.optimizer_d.milestones = config.optimizer_g.milestones
    config.optimizer_d.restart_periods = config.optimizer_g.restart_periods
    config.discriminator.num_feat = 16
    config.data.patch_size = 128  # the VGG-style discriminator takes 128x128 patches
    config.train.batch_size = 2
  elif variant:
    raise ValueError(f"configs/esrgan.py: unknown variant {variant!r} (known: 'demo')")
  return config
