"""Every config field with its default, defined once; the stage files override what they change.

`get_config()` is the whole schema: the shared fields, the data pipeline's (`config.data`), and the
GAN stage's (discriminator, optimizer_d, perceptual and adversarial loss terms), which stage 1
leaves unused. configs/esrgan_psnr.py (stage 1) and configs/esrgan.py (stage 2) start from it.
"""

import ml_collections

from configs import realesrgan_degradation

placeholder = ml_collections.config_dict.placeholder


def model_config() -> ml_collections.ConfigDict:
  """`config.model`: the generator. num_in_ch, num_out_ch, scale and num_feat are shared; each
  architecture reads its own fields below and ignores the others'."""
  return ml_collections.ConfigDict(dict(
      # "rrdbnet" (ESRGAN), "srvgg_compact" (Real-ESRGAN's SRVGGNetCompact) or "span" (SPAN).
      arch="rrdbnet",
      num_in_ch=3, num_out_ch=3, scale=4, num_feat=64,
      # rrdbnet.
      num_block=23, num_grow_ch=32,
      remat_blocks=False,  # recompute RRDBs in the backward pass when memory bound
      dense_block="auto",  # "concat" or "fused" (models/rrdbnet.py); auto: fastest measured here
      # srvgg_compact: body convs and activation (realesr-general-x4v3: num_feat 64, 32, prelu).
      num_conv=32, act_type="prelu",
      # span: feature width, and the RGB-mean normalisation of its input (3 channels only).
      feature_channels=48, norm=True,
  ))


def optimizer_config(learning_rate: float, milestones: tuple[int, ...],
                     num_steps: int) -> ml_collections.ConfigDict:
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
      # > 0: scale the step's gradients down to this global L2 norm first (optax's
      # clip_by_global_norm; the norm of the whole batch's mean gradient); 0: no clipping.
      clip_grad_norm=0.0,
  ))


def data_config() -> ml_collections.ConfigDict:
  """`config.data`: every field the input pipeline (esrgan_jax/data/pipeline.py) reads."""
  config = ml_collections.ConfigDict()
  # 'bundled' (skimage photos), 'folder' (hr_dir / lr_dir), 'prepared' (prepared_dir) or 'div2k'
  config.dataset = "bundled"
  config.bundled_photos = ()  # bundled: the training photos to use, by file name (empty: all)
  config.hr_dir = placeholder(str)  # folder: HR images (png/jpg/webp/bmp/tiff), sorted by name
  config.lr_dir = placeholder(str)  # folder: LR images matched by name (unset: bicubic from HR)
  config.prepared_dir = placeholder(str)  # prepared: a folder written by python -m esrgan_jax.prepare
  config.tfds_name = "div2k/bicubic_x4"  # div2k: TFDS name/config; its _xN must match the scale
  config.tfds_data_dir = placeholder(str)  # div2k: TFDS data dir (unset: TFDS's default)
  config.tfds_manual_dir = placeholder(str)  # div2k: folder with DIV2K's zip files, for offline
  # div2k: prepare (download) the dataset when it is missing, in single-process runs only.
  config.tfds_download = True
  config.patch_size = 128  # HR patch side; the LR patch is patch_size // scale
  config.use_hflip = True  # random horizontal flips
  config.use_rot = True  # random vertical flips and 90-degree rotations (transposes)
  # Permute the RGB channels of each training patch at random (LR and HR alike): no colour is
  # more likely than another, so a small dataset of warm photos teaches no colour prior (demos).
  config.channel_shuffle = False
  # Decode this process's images (and make their LR) once and keep them in memory. False: decode
  # on every use, for data larger than memory; PNG decoding then bounds the throughput.
  config.cache_decoded = True
  config.shuffle_seed = placeholder(int)  # seed of the data order and crops (unset: config.seed)
  config.on_bad_image = "skip"  # unreadable image: 'skip' (with a warning) or 'error'
  config.on_small_image = "skip"  # smaller than the patch: 'skip' (warning) or 'pad' (reflect)
  config.num_workers = placeholder(int)  # threads decoding and cropping (unset: CPUs, at most 16)
  config.prefetch_batches = 2  # process-local batches prepared ahead of the trainer
  # Shard the data over batch slots only when each slot gets at least this many images (see
  # pipeline.py's docstring); smaller datasets are sampled uniformly by every slot.
  config.min_images_per_slot = 8
  # Where the LR of a training pair comes from. 'bicubic': the host pairs each HR patch with its
  # LR file or MATLAB-bicubic LR. 'degradation': the host yields GT images only ({'hr'}, uint8,
  # crop_pad_size square) and the train step makes LR on the device with config.degradation
  # (Real-ESRGAN's second-order pipeline), then crops patch_size / patch_size // scale pairs.
  config.lr_source = "bicubic"
  # lr_source='degradation': every GT image is cropped at a random position, or reflect-padded,
  # to this square on the host (Real-ESRGAN dataset's crop_pad_size: 400).
  config.crop_pad_size = 400
  # Evaluation sets: name -> {hr_dir, lr_dir (optional: bicubic LR from the HR)}, in the
  # Set5/Set14/BSD100/Urban100 layout. Empty: the two bundled held-out photographs.
  config.eval_sets = ml_collections.ConfigDict()
  config.eval_max_images = placeholder(int)  # at most this many images per evaluation set
  # The LR of an evaluation image without an lr_dir (the bundled photos included). 'bicubic':
  # MATLAB-bicubic from the HR, the field's convention for ESRGAN. 'degradation': the
  # config.degradation pipeline of image i with seed eval_lr_seed, slot i, exactly what
  # `python -m esrgan_jax.degrade HR_DIR OUT --seed eval_lr_seed` writes: the inputs a real-world
  # model is made for (bicubic LR would test it on a distribution it never trained on). Made
  # once per run (and again on resume), one compilation per distinct image size.
  config.eval_lr = "bicubic"
  config.eval_lr_seed = 0
  return config


def degradation_config(scale: int) -> ml_collections.ConfigDict:
  config = realesrgan_degradation.get_degradation_config(scale)
  # The training-pair pool (Real-ESRGAN's _dequeue_and_enqueue), part of the train state: pairs
  # kept across steps so that a batch mixes the degradations of several batches. A multiple of
  # pool_batch_size; 0: no pool (each step trains on its own batch).
  config.pool_size = 0
  # One pool per group of this many consecutive batch slots (a multiple of it is the batch);
  # 0: one pool for the whole batch. Real-ESRGAN keeps a pool per GPU for its
  # batch_size_per_gpu, so its 4 GPUs x 12 are 4 pools of 12 slots, whatever runs this.
  config.pool_batch_size = 0
  return config


def get_config() -> ml_collections.ConfigDict:
  num_steps = 1_000_000
  config = ml_collections.ConfigDict()
  config.stage = "psnr"  # "psnr" (stage 1, pixel loss only) or "gan" (stage 2)
  config.mode = "train"  # or "eval": restore a checkpoint and run the evaluation sets only
  config.seed = 0
  # 'rbg' compiles parameter initialisation far faster than 'threefry2x32' (minutes for the full
  # model); both are deterministic given the seed, so resume and topology independence hold.
  config.prng_impl = "rbg"
  config.model = model_config()
  config.compute_dtype = "float32"  # "bfloat16": bf16 activations, float32 params and optimiser
  # A workdir of an earlier run (or its checkpoint directory, or a generator converted from
  # PyTorch): G starts from its generator and the EMA copy from its EMA generator. Stage 2 starts
  # from stage 1's; empty: a random generator.
  config.generator_init = ""
  # True: G starts from generator_init's EMA generator too (Real-ESRGAN's stage 2, yml:
  # path.param_key_g params_ema), not from its raw generator.
  config.generator_init_from_ema = False
  config.data = data_config()
  # Real-ESRGAN's degradation table (configs/realesrgan_degradation.py), read only with
  # config.data.lr_source='degradation'; its scale must equal config.model.scale.
  config.degradation = degradation_config(scale=4)
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
      # Split each step's batch into this many micro-batches, run one after the other inside the
      # step, and update once from their mean gradient: batch_size's update in the memory of
      # batch_size / grad_accum_steps (training/accumulation.py says what RaGAN and BatchNorm see).
      grad_accum_steps=1,
  ))
  config.optimizer_g = optimizer_config(2e-4, (200_000, 400_000, 600_000, 800_000), num_steps)
  # GAN stage only.
  config.optimizer_d = optimizer_config(1e-4, (50_000, 100_000, 200_000, 300_000), 400_000)
  config.discriminator = ml_collections.ConfigDict(dict(
      name="vgg_style",  # or "unet_sn" (Real-ESRGAN's U-Net with spectral norm)
      num_feat=64,
  ))
  config.loss = ml_collections.ConfigDict(dict(
      pixel_criterion="l1",
      pixel_weight=1.0,
      # GAN stage only.
      perceptual_weight=1.0,
      perceptual_layers={"conv5_4": 1.0},  # pre-ReLU VGG19 features and their weights
      perceptual_criterion="l1",
      gan_weight=5e-3,
      # 'ragan' (ESRGAN's relativistic average GAN) or 'vanilla' (Real-ESRGAN's plain GAN loss:
      # BCE with logits, G labels its output real).
      gan_type="ragan",
      # Targets against the USM-sharpened GT (lr_source='degradation' only), Real-ESRGAN's
      # l1_gt_usm / percep_gt_usm / gan_gt_usm: the L1, perceptual and discriminator's real
      # input. Stage 1 (psnr) reads l1_gt_usm as Real-ESRNet's gt_usm.
      l1_gt_usm=False,
      percep_gt_usm=False,
      gan_gt_usm=False,
      # LDL's artifacts term (Liang et al., CVPR 2022; training/losses.py's ldl_loss) in G's loss,
      # with this weight: needs the EMA generator (train.ema_decay > 0). 0: off (GAN stage only).
      ldl_weight=0.0,
      # torchvision VGG19 ImageNet weights converted by `python -m esrgan_jax.convert --vgg19`
      # (or the .pth itself, which needs torch). Empty: random VGG19 weights, with a warning.
      vgg19_weights="",
  ))
  config.eval = ml_collections.ConfigDict(dict(
      checkpoint="",  # eval mode: a generator checkpoint to evaluate instead of the workdir's
      checkpoint_step=-1,  # eval mode, workdir checkpoints: -1 restores the latest
      tile=0,  # tiled inference for large images (0: whole image)
      tile_pad=16,
      num_comparison_images=4,  # LR | bicubic | SR | HR pictures written per evaluation
      # LPIPS weights converted by `python -m esrgan_jax.convert --lpips` (empty: LPIPS is not computed).
      lpips_weights="",
      # DISTS weights converted by `python -m esrgan_jax.convert --dists` (empty: no DISTS).
      dists_weights="",
      # NIQE pristine model, BasicSR's niqe_pris_params.npz or MATLAB's modelparameters.mat (or one
      # made by esrgan_jax.metrics.fit_niqe_params); empty: NIQE is not computed.
      niqe_params="",
      # FID Inception converted by `python -m esrgan_jax.convert --inception` (empty: no FID, KID,
      # IS). Each image gives fid_grid x fid_grid fixed crops of fid_crop_size pixels (each resized
      # to 299 as pytorch-fid does): 9 of 128 px give Set14 126 samples.
      inception_weights="",
      fid_crop_size=128,
      fid_grid=3,
      kid_subsets=100,
      # One IS split: ~100 crops in 10 splits would cap IS at ~10 (10 is the usual on 50k images).
      is_splits=1,
  ))
  return config


def apply_realworld(config: ml_collections.ConfigDict, scale: int) -> None:
  """What Real-ESRNet and Real-ESRGAN share (options/train_realesr*_x{4,2}plus.yml): GT-only
  data degraded on the device, the pair pool, the batch and the EMA."""
  config.model.scale = scale  # yml: scale / network_g.scale (x2plus: pixel-unshuffle RRDBNet)
  config.data.update(
      lr_source="degradation",  # the model's feed_data: high_order_degradation
      eval_lr="degradation",  # yml's validation pairs are a degraded folder (see eval_lr)
      crop_pad_size=400,  # realesrgan_dataset.py: crop_pad_size = 400
      patch_size=256,  # yml: gt_size 256 (the paired random crop after the degradations)
      use_hflip=True,  # yml: use_hflip true
      use_rot=False,  # yml: use_rot false
  )
  config.degradation = degradation_config(scale)
  config.degradation.pool_size = 180  # yml: queue_size 180, per GPU
  config.degradation.pool_batch_size = 12  # yml: batch_size_per_gpu 12 (one pool per GPU)
  config.train.update(
      batch_size=48,  # yml: batch_size_per_gpu 12, on 4 GPUs
      ema_decay=0.999,  # yml: train.ema_decay 0.999
      eval_every_steps=5000,  # yml: val.val_freq 5e3
      checkpoint_every_steps=5000,  # yml: logger.save_checkpoint_freq 5e3
  )


def apply_realworld_demo(config: ml_collections.ConfigDict, num_steps: int,
                         learning_rates: dict[str, float]) -> None:
  """apply_demo for the real-world configs: small GT squares, crops and pool."""
  apply_demo(config, num_steps=num_steps, learning_rates=learning_rates)
  scale = config.model.scale
  # apply_demo's shuffled channels matter most here: unshuffled, the warm photos taught
  # Real-ESRNet's demo to take blue out. The flat grayscale photos: without them no training
  # pixel at a dark sky's levels lies in a flat area, and the pairs there teach darkening
  # (configs/realesrnet_x4plus.py).
  config.data.bundled_photos = REALWORLD_DEMO_PHOTOS
  config.data.update(crop_pad_size=128, patch_size=16 * scale)
  config.degradation.update(pool_batch_size=2, pool_size=4)  # two pools of 4 pairs
  for name in optimizers(config):
    config[name].milestones = (num_steps,)  # a constant step size over so short a run


def optimizers(config: ml_collections.ConfigDict) -> list[str]:
  """Names of the config's optimiser sections (optimizer_g, optimizer_d, ...)."""
  return sorted(name for name in config if name.startswith("optimizer_"))


# SPAN's demo width (no published figure; ours: in the bicubic demo 48 channels ran ~5 img/s on 2
# cores, and 16, 24 and 32 all reached PSNR-Y 30.81 in its 1500 unshuffled steps (8: 30.37), 16 at
# ~95 img/s).
DEMO_SPAN_CHANNELS = 16
# The demos' training photos: the bundled ones without the near-black hubble and retina.
DEMO_PHOTOS = ("astronaut.png", "coffee.png", "ihc.png", "motorcycle_left.png")
# The real-world demos add the three grayscale photos with large flat areas (camera's sky,
# cell's background, the moon's surface).
REALWORLD_DEMO_PHOTOS = DEMO_PHOTOS + ("camera.png", "cell.png", "moon.png")


def apply_demo(config: ml_collections.ConfigDict, num_steps: int,
               learning_rates: dict[str, float]) -> None:
  """A model small enough to train for a few hundred steps on 2 CPU cores in a few minutes.

  Every optimiser gets a schedule scaled to the short run; `learning_rates` sets those named.
  """
  # Every architecture's sizes, so that `--config.model.arch=` on a demo stays a demo.
  # srvgg_compact: 8 body convs, as traiNNer-redux's UltraCompact; from PyTorch's initialisation
  # 16 or 32 pass the input on too weakly to learn in a demo (configs/realesr_compact_x4.py).
  config.model.update(num_feat=16, num_block=2, num_grow_ch=8, num_conv=8,
                      feature_channels=DEMO_SPAN_CHANNELS)
  # Both demo recipes: every bundled training photo but the black hubble is warm (red mean above
  # blue), and a tiny model learns that colour prior unless the channels are shuffled; the
  # near-black photos (hubble's sky, retina's border) then still pulled the blue rocket's red
  # down. Measured in configs/esrgan_psnr.py and configs/realesrnet_x4plus.py.
  config.data.update(dataset="bundled", patch_size=64, channel_shuffle=True,
                     bundled_photos=DEMO_PHOTOS)
  # A short run: the EMA must track the generator within a few hundred steps to be worth
  # evaluating, and a tiny model tolerates a larger step.
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=25, ema_decay=0.9,
                      eval_every_steps=num_steps // 2, checkpoint_every_steps=num_steps // 2)
  for name in optimizers(config):
    config[name].update(milestones=(num_steps // 2,), restart_periods=(num_steps,))
  for name, learning_rate in learning_rates.items():
    config[name].learning_rate = learning_rate
