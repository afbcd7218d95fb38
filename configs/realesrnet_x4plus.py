"""Real-ESRNet x4 (stage 1 of Real-ESRGAN): L1 only, on LR made on the device by the second-order
degradations, with the training-pair pool.

Figures from Real-ESRGAN's options/train_realesrnet_x4plus.yml (each with its key); the shared
real-world fields are in configs/default.py's apply_realworld. Real-ESRNet starts from an ESRGAN
x4 generator (yml: path.pretrain_network_g ESRGAN_SRx4_DF2KOST_official-ff704c30.pth): convert
it with `python -m esrgan_jax.convert` and pass `--config.generator_init=DIR`.

Variants: `:demo` trains a reduced model on the bundled photographs on a CPU.
"""

import ml_collections

from configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.stage = "psnr"
  default.apply_realworld(config, scale=4)
  num_steps = 1_000_000  # yml: train.total_iter 1000000
  config.train.num_steps = num_steps
  # yml: optim_g Adam lr 2e-4, betas [0.9, 0.99]; scheduler MultiStepLR milestones [1000000],
  # gamma 0.5
  config.optimizer_g = default.optimizer_config(2e-4, (1_000_000,), num_steps)
  config.loss.update(
      pixel_criterion="l1",  # yml: pixel_opt.type L1Loss
      pixel_weight=1.0,  # yml: pixel_opt.loss_weight 1.0
      l1_gt_usm=True,  # yml: gt_usm true (the GT is USM-sharpened before everything)
  )
  if variant == "demo":
    default.apply_realworld_demo(config, num_steps=100, learning_rates={"optimizer_g": 1e-3})
  elif variant:
    raise ValueError(f"configs/realesrnet_x4plus.py: unknown variant {variant!r} (known: 'demo')")
  return config
