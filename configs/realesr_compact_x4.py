"""Real-ESRGAN's compact generator x4 (SRVGGNetCompact as realesr-general-x4v3) trained on
Real-ESRGAN's real-world degradations.

The generator is Real-ESRGAN's (inference_realesrgan.py); the data are Real-ESRGAN's
(configs/default.py's apply_realworld, as configs/realesrnet_x4plus.py); Real-ESRGAN published no
training options for this network, so the optimiser, schedule, batch, patch and losses come from
traiNNer-redux's templates for it (options/_templates/train/Compact/, each figure with its key).
The templates' queue, ema warm-up and GAN losses differ in places: configs/fast_realworld.py says
where.

Stages, one job each (as the templates):
  ''      Compact_OTF_fidelity.yml: from scratch, Charbonnier loss only.
  ':gan'  Compact_OTF_gan.yml: the GAN stage; start it from the fidelity stage
          (yml: path.pretrain_network_g) with `--config.generator_init=FIDELITY_WORKDIR`.
  ':demo' the fidelity stage made small for the bundled photographs on a CPU.

From scratch, note: with PyTorch's default initialisation (ours, as the published code's) each
conv + PReLU scales the input's share of the signal by ~1/2.4 (weight variance 1 / (3 fan_in),
slope 0.25), so at step 0 a stack of 32 convs outputs the nearest upsampled input whatever the
input (measured with reference/torch_srvgg.py at num_feat 64: the residual moves by 6e-8 when
the input changes; the first conv's gradient is ~2e-16, under Adam's eps). The bicubic demo
(`configs/esrgan_psnr.py:demo --config.model.arch=srvgg_compact`) stays at exactly
nearest-neighbour PSNR-Y (29.5874) after 1500 steps with num_conv 16 or 32, and learns with 8
(31.07): hence the demos' num_conv 8 (configs/default.py's apply_demo). Starting from converted
realesr-general-x4v3 weights (`--config.generator_init`) avoids the wait.
"""

import ml_collections

from configs import fast_realworld
from configs.fast_realworld import Template

MODEL = dict(
    arch="srvgg_compact",
    # inference_realesrgan.py, realesr-general-x4v3: SRVGGNetCompact(num_in_ch=3, num_out_ch=3,
    # num_feat=64, num_conv=32, upscale=4, act_type='prelu')
    num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, act_type="prelu",
)

FIDELITY = Template(  # Compact_OTF_fidelity.yml
    learning_rate=2e-4,  # train.optim_g.lr 2e-4
    milestones=(100_000, 200_000, 300_000, 400_000, 425_000),  # train.scheduler.milestones
    num_steps=450_000,  # train.total_iter 450000
    batch_size=16,  # datasets.train.batch_size_per_gpu 16
    lq_size=96,  # datasets.train.lq_size 96 (HR patch 384)
)

GAN = Template(  # Compact_OTF_gan.yml
    learning_rate=1e-4,  # train.optim_g.lr / optim_d.lr 1e-4
    milestones=(50_000, 100_000, 150_000, 200_000, 225_000),  # train.scheduler.milestones
    num_steps=250_000,  # train.total_iter 250000
    batch_size=8,  # datasets.train.batch_size_per_gpu 8
    lq_size=96,  # datasets.train.lq_size 96 (HR patch 384)
)

# The demo's steps (no published figure; ours: configs/realesrnet_x4plus.py:demo's 100).
# Measured: PSNR-Y 27.1320 against 27.8174 for bicubic of the same degraded LR, channel means
# within 1.1 levels of HR (benchmarks/demo_check.py --recipe=realworld --no_train, the workdir as
# both stages), 36 s on this shared 2-core machine: the mechanics, not a restoration (as
# Real-ESRNet's demo).
DEMO_STEPS = 100


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return fast_realworld.fast_realworld_config("realesr_compact_x4", variant, MODEL, FIDELITY, GAN,
                                              DEMO_STEPS)
