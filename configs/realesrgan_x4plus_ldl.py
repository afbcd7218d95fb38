"""Real-ESRGAN x4 (stage 2) with LDL's artifact suppression (Liang, Zeng, Zhang, "Details or
Artifacts", CVPR 2022): configs/realesrgan_x4plus.py plus the artifacts term, with the figures of
LDL's published options/train/LDL/train_Realworld_LDL.yml (model RealESRGANArtifactsDisModel;
each figure with its key). Its degradations, perceptual and GAN losses, USM targets,
discriminator and schedule are Real-ESRGAN x4plus's; it differs in the L1 weight (1e-2, not 1.0),
the batch (and so the pool's groups) and the artifacts term, whose map is taken against the GT
without USM sharpening, as that model's is. Start from
Real-ESRNet (yml: path.pretrain_network_g RealESRNet_x4plus.pth, param_key_g params_ema):
`--config.generator_init=` the stage-1 workdir (configs/realesrnet_x4plus.py) or a converted one.

Variants: `:demo` runs configs/realesrgan_x4plus.py's demo with the artifacts term on a CPU.
"""

import ml_collections

from configs import realesrgan_x4plus

LDL_WEIGHT = 1.0  # yml: artifacts_opt L1Loss, loss_weight 1.0, reduction mean


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = realesrgan_x4plus.realesrgan_config(4, "realesrgan_x4plus_ldl", variant)
  config.loss.ldl_weight = LDL_WEIGHT
  if variant == "demo":
    # x4plus's demo steps (1e-5, EMA 0.99) with the term: from the realworld chain's Real-ESRNet
    # (benchmarks.demo_check --no_train after `esrgan_jax.main --config=...ldl.py:demo`,
    # 2026-12-07) rocket [-2.8, -0.8, -2.6] and chelsea [1.8, 1.4, -0.6] off HR, as x4plus's.
    return config
  config.loss.pixel_weight = 1e-2  # yml: pixel_opt L1Loss, loss_weight 1e-2 (x4plus: 1.0)
  config.train.update(
      batch_size=16,  # yml: batch_size_per_gpu 4, num_gpu 4
      ema_decay=0.999,  # yml: train.ema_decay 0.999 (the artifact map's EMA generator)
  )
  config.degradation.update(
      pool_size=180,  # yml: queue_size 180, per GPU
      pool_batch_size=4,  # one pool per GPU of batch_size_per_gpu 4
  )
  return config
