"""ESRGAN stage 2 with LDL's artifact suppression (Liang, Zeng, Zhang, "Details or Artifacts",
CVPR 2022): configs/esrgan.py plus the artifacts term, with the figures of LDL's published
options/train/LDL/train_Synthetic_LDL.yml (model ESRGANArtifactsDisModel: the RaGAN step; each
figure with its key). Start, as LDL does (path.pretrain_network_g
ESRGAN_PSNR_SRx4_DF2K_official, param_key_g params_ema), from a stage-1 generator:
`--config.generator_init=` the stage-1 workdir or a converted generator.

Variants: `:demo` runs configs/esrgan.py's demo with the artifacts term on a CPU.
"""

import ml_collections

from configs import default, esrgan

LDL_WEIGHT = 1.0  # yml: artifacts_opt L1Loss, loss_weight 1.0, reduction mean


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "demo"):
    raise ValueError(f"configs/esrgan_ldl.py: unknown variant {variant!r} (known: 'demo')")
  config = esrgan.get_config(variant)
  config.loss.ldl_weight = LDL_WEIGHT
  if variant == "demo":
    return config
  num_steps = 300_000  # yml: train.total_iter 300000
  config.train.update(
      num_steps=num_steps,
      batch_size=64,  # yml: batch_size_per_gpu 16, num_gpu 4
      ema_decay=0.999,  # yml: train.ema_decay 0.999 (the artifact map's EMA generator)
  )
  # yml: optim_g / optim_d Adam lr 1e-4, betas [0.9, 0.99]; MultiStepLR milestones [300000],
  # gamma 1: a constant step size.
  for name in ("optimizer_g", "optimizer_d"):
    config[name] = default.optimizer_config(1e-4, (num_steps,), num_steps)
    config[name].gamma = 1.0
  config.loss.update(
      pixel_weight=1e-2,  # yml: pixel_opt L1Loss, loss_weight 1e-2
      # yml: perceptual_opt layer_weights (before relu), vgg19, L1, perceptual_weight 1.0
      perceptual_layers={"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                         "conv5_4": 1.0},
      perceptual_weight=1.0,
      perceptual_criterion="l1",
      gan_weight=5e-3,  # yml: gan_opt loss_weight 5e-3 (vanilla BCE in the RaGAN model)
  )
  # yml: network_d VGGStyleDiscriminator128, num_feat 64; datasets.train.gt_size 128, use_flip
  # and use_rot true (configs/default.py's).
  config.discriminator.update(name="vgg_style", num_feat=64)
  config.data.patch_size = 128
  return config
