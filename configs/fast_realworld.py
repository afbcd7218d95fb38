"""What configs/realesr_compact_x4.py and configs/span_x4.py share: Real-ESRGAN's real-world data
(configs/default.py's apply_realworld: the degradations, the USM-sharpened GT, the pair pool) with
the optimiser, schedule, batch, patch and losses of a traiNNer-redux template
(options/_templates/train/<arch>/*_OTF_fidelity.yml and *_OTF_gan.yml).

A template's figures come in a `Template`, written out with their yml keys by each config file.
The fidelity template is the default stage; `:gan` is the GAN template, started from the fidelity
stage's workdir; `:demo` is the fidelity stage made small for the bundled photos.
"""

import dataclasses
import math

import ml_collections

from configs import default, realesrgan_x4plus

# A template's queue_size (both templates: 120). traiNNer-redux's _dequeue_and_enqueue asserts
# that it is a multiple of batch_size_per_gpu, which 120 is not for the templates' batch of 16.
TEMPLATE_QUEUE_SIZE = 120
DEMO_LEARNING_RATE = 1e-3  # ours: from scratch (Real-ESRNet's demo starts from a trained G)


@dataclasses.dataclass(frozen=True)
class Template:
  """The figures of one traiNNer-redux training template."""
  learning_rate: float  # train.optim_g.lr (and optim_d.lr in the GAN templates)
  milestones: tuple[int, ...]  # train.scheduler.milestones (MultiStepLR, gamma 0.5)
  num_steps: int  # train.total_iter
  batch_size: int  # datasets.train.batch_size_per_gpu, on one GPU
  lq_size: int  # datasets.train.lq_size: the LR patch side


def pool_size(batch_size: int) -> int:
  """The template's queue_size where it is a multiple of the batch, else the next multiple up
  (no published figure: traiNNer-redux would stop at its assertion; ours keeps at least the
  template's diversity)."""
  return math.ceil(TEMPLATE_QUEUE_SIZE / batch_size) * batch_size


def fast_realworld_config(name: str, variant: str, model: dict, fidelity: Template,
                          gan: Template, demo_steps: int) -> ml_collections.ConfigDict:
  """The config of `configs/{name}.py` for `variant` ('', 'gan' or 'demo')."""
  if variant not in ("", "gan", "demo"):
    raise ValueError(f"configs/{name}.py: unknown variant {variant!r} "
                     "(known: 'gan', 'demo')")
  config = default.get_config()
  default.apply_realworld(config, scale=4)  # yml: scale 4
  config.model.update(model)
  template = gan if variant == "gan" else fidelity
  config.train.update(
      num_steps=template.num_steps,
      batch_size=template.batch_size,
      # yml: ema_decay 0.999 (the fidelity templates' ema_power 0.75 warm-up is not implemented
      # here: the EMA starts at its full decay).
      ema_decay=0.999,
  )
  config.data.update(
      patch_size=template.lq_size * config.model.scale,  # yml: lq_size (gt_size = lq * scale)
      use_hflip=True,  # yml: use_hflip true
      use_rot=True,  # yml: use_rot true (Real-ESRGAN's: false)
  )
  # yml: queue_size 120, per GPU (one pool for the template's batch on one GPU)
  config.degradation.update(pool_batch_size=template.batch_size,
                            pool_size=pool_size(template.batch_size))
  # yml: optim_g AdamW, weight_decay 0, betas [0.9, 0.99]: Adam(0.9, 0.99); scheduler
  # MultiStepLR, gamma 0.5
  config.optimizer_g = default.optimizer_config(template.learning_rate, template.milestones,
                                                template.num_steps)
  if variant == "gan":
    _apply_gan(config, template)
    return config
  config.stage = "psnr"
  config.loss.update(
      pixel_criterion="charbonnier",  # yml: losses charbonnierloss (eps 1e-12, as ours)
      pixel_weight=1.0,  # yml: charbonnierloss loss_weight 1.0
      # Real-ESRNet's yml: gt_usm true (part of Real-ESRGAN's recipe; the template has no USM).
      l1_gt_usm=True,
  )
  if variant == "demo":
    default.apply_realworld_demo(config, num_steps=demo_steps,
                                 learning_rates={"optimizer_g": DEMO_LEARNING_RATE})
  return config


def _apply_gan(config: ml_collections.ConfigDict, template: Template) -> None:
  """The GAN template's terms this code has; the ones it lacks are replaced by Real-ESRGAN's."""
  config.stage = "gan"
  # yml: optim_d AdamW lr as optim_g's, weight_decay 0, betas [0.9, 0.99]
  config.optimizer_d = default.optimizer_config(template.learning_rate, template.milestones,
                                                template.num_steps)
  # The template's pixel and perceptual terms (MS-SSIM 0.5, HSLuv 1.0 and its own perceptual
  # loss 0.01) do not exist here: in their place Real-ESRGAN's train_realesrgan_x4plus.yml terms
  # (L1 1.0 and VGG19 perceptual 1.0 against the USM-sharpened GT).
  realesrgan_x4plus.apply_losses(config)
  # yml: gan_opt type ganloss, gan_type vanilla, loss_weight 0.1 (Real-ESRGAN's too)
  config.loss.update(gan_type="vanilla", gan_weight=0.1)
  # yml: network_d type dunet, whose comment lists unetdiscriminatorsn, the one here
  # (traiNNer-redux's UNetDiscriminatorSN defaults: num_feat 64, skip_connection true).
  config.discriminator.update(name="unet_sn", num_feat=64)
