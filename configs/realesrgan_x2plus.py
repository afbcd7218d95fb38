"""Real-ESRGAN x2 (stage 2): configs/realesrgan_x4plus.py at scale 2, as Real-ESRGAN's
options/train_realesrgan_x2plus.yml (scale 2; network_g RRDBNet scale 2, which pixel-unshuffles
its input; the degradations' second resize and final size follow the scale: H/2). Start from a
Real-ESRNet x2 generator (yml: path.pretrain_network_g RealESRNet_x2plus.pth) with
`--config.generator_init=DIR`.

Variants: `:demo` runs the GAN stage on the bundled photographs on a CPU.
"""

import ml_collections

from configs import realesrgan_x4plus


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return realesrgan_x4plus.realesrgan_config(2, "realesrgan_x2plus", variant)
