"""SPAN x4 (feature_channels 48) trained on Real-ESRGAN's real-world degradations.

The data are Real-ESRGAN's (configs/default.py's apply_realworld, as
configs/realesrnet_x4plus.py); the network, optimiser, schedule, batch, patch and losses come from
traiNNer-redux's SPAN_S templates (options/_templates/train/SPAN/SPAN_S_OTF_*.yml, network_g
type span_s: SPAN with feature_channels 48), each figure with its key. The templates' queue, ema
warm-up and GAN losses differ in places: configs/fast_realworld.py says where.

Stages, one job each (as the templates):
  ''      SPAN_S_OTF_fidelity.yml: from scratch, Charbonnier loss only.
  ':gan'  SPAN_S_OTF_gan.yml: the GAN stage; start it from the fidelity stage
          (yml: path.pretrain_network_g) with `--config.generator_init=FIDELITY_WORKDIR`.
  ':demo' the fidelity stage made small for the bundled photographs on a CPU.

SPAN has no skip from its input: from scratch it learns the upsampling itself, slowly (the
bicubic demo with `--config.model.arch=span` is measured in configs/esrgan_psnr.py).
"""

import ml_collections

from configs import fast_realworld
from configs.fast_realworld import Template

MODEL = dict(
    arch="span",
    # traiNNer-redux's span_arch.py span_s: num_in_ch 3, num_out_ch 3, feature_channels 48
    num_in_ch=3, num_out_ch=3, feature_channels=48,
    # yml: network_g norm false ("some pretrains require norm: true", the official code's)
    norm=False,
)

FIDELITY = Template(  # SPAN_S_OTF_fidelity.yml
    learning_rate=5e-4,  # train.optim_g.lr 5e-4
    milestones=(200_000, 400_000, 600_000, 800_000),  # train.scheduler.milestones
    num_steps=1_000_000,  # train.total_iter 1000000
    batch_size=16,  # datasets.train.batch_size_per_gpu 16 ("paper: 64")
    lq_size=64,  # datasets.train.lq_size 64 (HR patch 256)
)

GAN = Template(  # SPAN_S_OTF_gan.yml
    learning_rate=1e-4,  # train.optim_g.lr / optim_d.lr 1e-4 ("paper: 2.5e-4")
    milestones=(100_000, 200_000, 300_000, 400_000),  # train.scheduler.milestones
    num_steps=500_000,  # train.total_iter 500000
    batch_size=16,  # datasets.train.batch_size_per_gpu 16
    lq_size=64,  # datasets.train.lq_size 64 (HR patch 256)
)

# The demo's steps (no published figure; ours). SPAN has no path from its input to its output but
# through the network, so from scratch it learns luminance first: after 100 steps it wrote gray
# pictures (chelsea [-26.1, 9.4, 30.8] off HR, `python -m benchmarks.demo_check
# --recipe=realworld --no_train` with the workdir as both stages), after 400 colours within 2.9
# levels, after 800 within 2.5 (--config.seed=1: 2.7) and PSNR-Y 27.68 / 27.77 (chelsea / rocket)
# against bicubic's 27.93 / 27.70 of the same degraded LR, in 102 s on this shared 2-core
# machine: the mechanics, not a restoration (as Real-ESRNet's demo).
DEMO_STEPS = 800


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return fast_realworld.fast_realworld_config("span_x4", variant, MODEL, FIDELITY, GAN,
                                              DEMO_STEPS)
