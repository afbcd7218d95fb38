"""Stage 1: PSNR-oriented pre-training of RRDBNet x4 with the L1 loss alone.

Figures follow the ESRGAN paper (Sec. 4.1): Adam(2e-4, beta1 0.9, beta2 0.99 as BasicSR), batch 16,
HR patch 128, learning rate halved every 200k updates, 1M updates in all. BasicSR's
train_RRDBNet_PSNR_x4.yml uses cosine annealing with restarts instead (4 x 250k, eta_min 1e-7):
select it with `--config.optimizer_g.schedule=cosine_restarts`.

Variants: `configs/esrgan_psnr.py:demo` trains a reduced model on the bundled photographs on a CPU.
"""

import ml_collections

from esrgan_jax.data.pipeline import default_data_config


def model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32,
      remat_blocks=False,  # recompute RRDBs in the backward pass when memory bound
      dense_block="auto",  # "concat" or "fused" (models/rrdbnet.py); auto: fastest measured here
  ))


def optimizer_config(learning_rate, milestones, num_steps) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      learning_rate=learning_rate,
      b1=0.9,
      b2=0.99,
      eps=1e-8,
      schedule="multistep",  # or "cosine_restarts"
      milestones=milestones,  # multistep: multiply by `gamma` after this many updates
      gamma=0.5,
      restart_periods=(num_steps // 4,) * 4,  # cosine_restarts: BasicSR's periods and eta_min
      eta_min=1e-7,
  ))


def common_config(stage: str, num_steps: int) -> ml_collections.ConfigDict:
  """Fields both stages share; each stage's file fills in its own hyper-parameters."""
  config = ml_collections.ConfigDict()
  config.stage = stage
  config.mode = "train"  # or "eval": restore a checkpoint and run the evaluation sets only
  config.seed = 0
  # 'rbg' compiles parameter initialisation far faster than 'threefry2x32' (minutes for the full
  # model); both are deterministic given the seed, so resume and topology independence hold.
  config.prng_impl = "rbg"
  config.model = model_config()
  config.compute_dtype = "float32"  # "bfloat16": bf16 activations, float32 params and optimiser
  config.data = default_data_config()
  config.train = ml_collections.ConfigDict(dict(
      batch_size=16,  # global, split over every device of every process
      num_steps=num_steps,
      ema_decay=0.999,  # BasicSR's net_g_ema, used for evaluation and export
      log_every_steps=100,
      eval_every_steps=5000,
      checkpoint_every_steps=5000,
      keep_checkpoints=3,  # the latest N, plus the best by eval PSNR
      profile_steps=0,  # > 0: write a profiler trace of that many steps after warm-up
      fsdp=False,  # shard params and optimiser state over the mesh instead of replicating
  ))
  config.loss = ml_collections.ConfigDict(dict(
      pixel_criterion="l1",
      pixel_weight=1.0,
  ))
  config.eval = ml_collections.ConfigDict(dict(
      checkpoint="",  # eval mode: a generator checkpoint to evaluate instead of the workdir's
      checkpoint_step=-1,  # eval mode, workdir checkpoints: -1 restores the latest
      tile=0,  # tiled inference for large images (0: whole image)
      tile_pad=16,
      num_comparison_images=4,  # LR | bicubic | SR | HR pictures written per evaluation
      # LPIPS weights converted by `python -m esrgan_jax.lpips` (empty: LPIPS is not computed).
      lpips_weights="",
  ))
  return config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common_config("psnr", num_steps=1_000_000)
  config.optimizer_g = optimizer_config(2e-4, (200_000, 400_000, 600_000, 800_000), 1_000_000)
  if variant == "demo":
    apply_demo(config, num_steps=300)
  elif variant:
    raise ValueError(f"configs/esrgan_psnr.py: unknown variant {variant!r} (known: 'demo')")
  return config


def apply_demo(config: ml_collections.ConfigDict, num_steps: int) -> None:
  """A model small enough to train for a few hundred steps on 2 CPU cores in a few minutes."""
  config.model.update(num_feat=16, num_block=2, num_grow_ch=8)
  config.data.update(dataset="bundled", patch_size=64)
  # A short run: the EMA must track the generator within a few hundred steps to be worth
  # evaluating, and a tiny model tolerates a larger step.
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=25, ema_decay=0.9,
                      eval_every_steps=num_steps // 2, checkpoint_every_steps=num_steps // 2)
  config.optimizer_g.learning_rate = 1e-3
  config.optimizer_g.milestones = (num_steps // 2,)
  config.optimizer_g.restart_periods = (num_steps,)
