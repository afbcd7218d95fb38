"""Stage 1: PSNR-oriented pre-training of RRDBNet x4 with the L1 loss alone.

Figures follow the ESRGAN paper (Sec. 4.1): Adam(2e-4, beta1 0.9, beta2 0.99 as BasicSR), batch 16,
HR patch 128, learning rate halved every 200k updates, 1M updates in all. BasicSR's
train_RRDBNet_PSNR_x4.yml uses cosine annealing with restarts instead (4 x 250k, eta_min 1e-7):
select it with `--config.optimizer_g.schedule=cosine_restarts`. Every field and its default is in
configs/default.py; this file sets what stage 1 changes.

Variants: `configs/esrgan_psnr.py:demo` trains a reduced model on the bundled photographs on a CPU.
"""

import ml_collections

from configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.stage = "psnr"
  num_steps = 1_000_000
  config.train.num_steps = num_steps
  config.optimizer_g = default.optimizer_config(2e-4, (200_000, 400_000, 600_000, 800_000),
                                                num_steps)
  if variant == "demo":
    # 300 steps (the first demo) left the EMA generator below bicubic (PSNR-Y 28.2 against 30.7
    # on the held-out photos): a network started from random weights first has to learn plain
    # interpolation. Measured with the same settings: 27.0 at step 300, 29.8 at 600, 30.6 at 900,
    # 30.97 at 1500, above bicubic on both photos (benchmarks/demo_check.py prints it).
    default.apply_demo(config, num_steps=1500, learning_rates={"optimizer_g": 1e-3})
    config.optimizer_g.milestones = (1000,)
  elif variant:
    raise ValueError(f"configs/esrgan_psnr.py: unknown variant {variant!r} (known: 'demo')")
  return config
