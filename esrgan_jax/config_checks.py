"""Config validation, the one place fields are checked: before anything is compiled, one line each."""

import math
import re
from typing import Optional

import ml_collections
from etils import epath

from esrgan_jax.cli import SEED_RANGE, ConfigError
from esrgan_jax.data.images import ImageFolderError, list_images
from esrgan_jax.data.pipeline import DATASETS, EVAL_LR_SOURCES, LR_SOURCES
from esrgan_jax.models import COMPUTE_DTYPES, DISCRIMINATORS
from esrgan_jax.models.discriminators import VGG_INPUT_SIZES
from esrgan_jax.models.rrdbnet import DENSE_BLOCK_CHOICES, SUPPORTED_SCALES
from esrgan_jax.models.srvgg import ACT_TYPES
from esrgan_jax.models.vgg19 import VGG19_LAYERS
from esrgan_jax.training.losses import GAN_TYPES, PIXEL_CRITERIA
from esrgan_jax.training.optim import SCHEDULES
from esrgan_jax.weights.generator import ARCHITECTURES


PRNG_IMPLS = ("rbg", "unsafe_rbg", "threefry2x32")
FAST_SCALES = (1, 2, 3, 4)  # SRVGGNetCompact and SPAN


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, num_devices: int, mode: str = "train") -> None:
  """Checks every field `mode` ('train' or 'eval') reads, before anything is compiled.

  The one place config fields are checked: the data pipeline checks only the files it reads, and
  the trainer and evaluator assume a validated config. Raises ConfigError naming the field.
  """
  _require(mode in ("train", "eval"), f"mode must be 'train' or 'eval', got {mode!r}")
  _require(config.stage in ("psnr", "gan"), f"config.stage must be 'psnr' or 'gan', got "
           f"{config.stage!r}")
  _require(config.mode in ("train", "eval"), f"config.mode must be 'train' or 'eval', got "
           f"{config.mode!r}")
  _require(config.compute_dtype in COMPUTE_DTYPES,
           f"config.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got "
           f"{config.compute_dtype!r}")
  low, high = SEED_RANGE
  _require(isinstance(config.seed, int) and not isinstance(config.seed, bool)
           and low <= config.seed <= high,
           f"config.seed must be an integer from {low} to {high}, got {config.seed!r}")
  _require_finite(config, "config")
  _validate_model(config.model)
  _validate_eval(config)
  if mode == "train":
    _validate_train(config, num_devices)


def _require_finite(value, field: str) -> None:
  """No NaN or infinity anywhere: a NaN weight or probability passes every range check written
  as a comparison, then trains on NaN."""
  if isinstance(value, ml_collections.ConfigDict):
    for key, item in value.items():
      _require_finite(item, f"{field}.{key}")
  elif isinstance(value, (list, tuple)):
    for i, item in enumerate(value):
      _require_finite(item, f"{field}[{i}]")
  elif isinstance(value, float):
    _require(math.isfinite(value), f"{field} must be a finite number, got {value}")


def _validate_model(model: ml_collections.ConfigDict) -> None:
  _require(model.arch in ARCHITECTURES,
           f"config.model.arch must be one of {ARCHITECTURES}, got {model.arch!r}")
  if model.arch != "rrdbnet":
    _validate_fast_model(model)
    return
  _require(model.scale in SUPPORTED_SCALES,
           f"config.model.scale must be one of {SUPPORTED_SCALES}, got {model.scale}")
  # num_feat=0 divides by zero in the initialisers, num_block=0 trains a network of no blocks.
  _require_positive(model, ("num_in_ch", "num_out_ch", "num_feat", "num_block", "num_grow_ch"))
  _require(model.dense_block in DENSE_BLOCK_CHOICES, f"config.model.dense_block must be one of "
           f"{DENSE_BLOCK_CHOICES}, got {model.dense_block!r}")


def _validate_fast_model(model: ml_collections.ConfigDict) -> None:
  """SRVGGNetCompact's and SPAN's fields; they upsample by any integer, not only by unshuffling."""
  _require(model.scale in FAST_SCALES, f"config.model.scale must be one of {FAST_SCALES} for "
           f"arch={model.arch!r}, got {model.scale!r}")
  if model.arch == "srvgg_compact":
    _require_positive(model, ("num_in_ch", "num_out_ch", "num_feat"))
    _require(isinstance(model.num_conv, int) and model.num_conv >= 0,
             f"config.model.num_conv must be a non-negative integer, got {model.num_conv!r}")
    _require(model.act_type in ACT_TYPES,
             f"config.model.act_type must be one of {ACT_TYPES}, got {model.act_type!r}")
    # The network adds its nearest-upsampled input to its output.
    _require(model.num_in_ch in (1, model.num_out_ch), f"config.model.num_in_ch="
             f"{model.num_in_ch} must be 1 or config.model.num_out_ch={model.num_out_ch} for "
             "srvgg_compact, which adds its upsampled input to its output")
    return
  _require_positive(model, ("num_in_ch", "num_out_ch", "feature_channels"))
  _require(isinstance(model.norm, bool),
           f"config.model.norm must be True or False, got {model.norm!r}")
  _require(not model.norm or model.num_in_ch == 3, f"config.model.norm=True subtracts an RGB "
           f"mean, so it needs config.model.num_in_ch=3, got {model.num_in_ch}")


def _require_positive(model: ml_collections.ConfigDict, names: tuple[str, ...]) -> None:
  for name in names:
    value = model[name]
    _require(isinstance(value, int) and value > 0,
             f"config.model.{name} must be a positive integer, got {value!r}")


def _validate_eval(config: ml_collections.ConfigDict) -> None:
  """What periodic evaluation and eval mode read: the eval sets and config.eval."""
  data, evaluation = config.data, config.eval
  _require(data.on_bad_image in ("skip", "error"),
           f"config.data.on_bad_image must be 'skip' or 'error', got {data.on_bad_image!r}")
  validate_eval_sets(data)
  max_images = data.eval_max_images
  _require(max_images is None or max_images > 0,
           f"config.data.eval_max_images must be positive (or unset), got {max_images}")
  _require(data.eval_lr in EVAL_LR_SOURCES,
           f"config.data.eval_lr must be one of {EVAL_LR_SOURCES}, got {data.eval_lr!r}")
  if data.eval_lr == "degradation":
    scale = config.degradation.scale
    _require(scale == config.model.scale, f"config.degradation.scale={scale} must equal "
             f"config.model.scale={config.model.scale}")
  for name in ("tile", "tile_pad", "num_comparison_images"):
    _require(evaluation[name] >= 0, f"config.eval.{name} must be >= 0, got {evaluation[name]}")
  for name in ("fid_crop_size", "fid_grid", "kid_subsets", "is_splits"):
    value = evaluation[name]
    _require(isinstance(value, int) and value >= 1,
             f"config.eval.{name} must be a positive integer, got {value!r}")
  # Weight files are read at the first evaluation, after compiling and training: check them now.
  for name in ("checkpoint", "lpips_weights", "dists_weights", "niqe_params",
              "inception_weights"):
    value = evaluation[name]
    _require(not value or epath.Path(value).exists(),
             f"config.eval.{name}: {value} does not exist")


def _validate_train(config: ml_collections.ConfigDict, num_devices: int) -> None:
  _require(config.prng_impl in PRNG_IMPLS, f"config.prng_impl must be one of "
           f"{PRNG_IMPLS}, got {config.prng_impl!r}")
  scale, patch = config.model.scale, config.data.patch_size
  # x1 and x2 RRDBNets pixel-unshuffle their input by 4 // scale; the others take any size.
  multiple = scale * (4 // scale if config.model.arch == "rrdbnet" else 1)
  _require(patch > 0 and patch % multiple == 0,
           f"config.data.patch_size={patch} must be a positive multiple of {multiple} for "
           f"config.model.scale={scale}")
  batch = config.train.batch_size
  _require(batch > 0 and batch % num_devices == 0,
           f"config.train.batch_size={batch} must be a positive multiple of the device count "
           f"({num_devices}), since the global batch is split evenly over the devices")
  accum = config.train.grad_accum_steps
  _require(isinstance(accum, int) and accum >= 1,
           f"config.train.grad_accum_steps must be a positive integer, got {accum!r}")
  _require(batch % (accum * num_devices) == 0,
           f"config.train.batch_size={batch} must be a multiple of config.train.grad_accum_steps"
           f"={accum} times the device count ({num_devices}): each micro-batch is split evenly "
           "over the devices")
  _require(config.train.num_steps > 0, "config.train.num_steps must be positive")
  for name in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
               "keep_checkpoints"):
    _require(config.train[name] > 0, f"config.train.{name} must be positive")
  _require(config.train.profile_steps >= 0, "config.train.profile_steps must be >= 0")
  _require(0.0 <= config.train.ema_decay < 1.0, "config.train.ema_decay must be in [0, 1)")
  _validate_ldl(config)
  _require(config.loss.pixel_criterion in PIXEL_CRITERIA,
           f"config.loss.pixel_criterion must be one of {sorted(PIXEL_CRITERIA)}, got "
           f"{config.loss.pixel_criterion!r}")
  _require(not config.generator_init or epath.Path(config.generator_init).exists(),
           f"config.generator_init: {config.generator_init} does not exist")
  _validate_data(config.data, scale)
  _validate_realworld(config)
  _validate_optimizer(config, "optimizer_g")
  if config.stage == "gan":
    _validate_optimizer(config, "optimizer_d")
    _validate_gan(config)


def _validate_ldl(config: ml_collections.ConfigDict) -> None:
  weight = config.loss.ldl_weight
  _require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0,
           f"config.loss.ldl_weight must be a number >= 0, got {weight!r}")
  # The artifact map compares the output with the EMA generator's: with decay 0 that is G itself.
  _require(weight == 0 or config.train.ema_decay > 0, f"config.loss.ldl_weight={weight} needs "
           f"the EMA generator: set config.train.ema_decay > 0 (got {config.train.ema_decay})")


def _validate_optimizer(config: ml_collections.ConfigDict, name: str) -> None:
  optimizer = config[name]
  _require(optimizer.learning_rate > 0, f"config.{name}.learning_rate must be positive")
  clip = optimizer.clip_grad_norm
  _require(clip is None or (isinstance(clip, (int, float)) and clip >= 0),
           f"config.{name}.clip_grad_norm must be >= 0 (0 or None: no clipping), got {clip!r}")
  _require(optimizer.schedule in SCHEDULES, f"config.{name}.schedule must be one of "
           f"{tuple(SCHEDULES)}, got {optimizer.schedule!r}")
  if optimizer.schedule == "cosine_restarts":
    _require(len(optimizer.restart_periods) > 0 and min(optimizer.restart_periods) > 0,
             f"config.{name}.restart_periods must be positive, got {optimizer.restart_periods}")


def _validate_data(data: ml_collections.ConfigDict, scale: int) -> None:
  """The training data fields (the eval sets are _validate_eval's)."""
  _require(data.dataset in DATASETS,
           f"config.data.dataset must be one of {DATASETS}, got {data.dataset!r}")
  _require(data.on_small_image in ("skip", "pad"),
           f"config.data.on_small_image must be 'skip' or 'pad', got {data.on_small_image!r}")
  if data.dataset == "folder":
    _require(bool(data.hr_dir), "config.data.hr_dir: set it to a folder of HR images for "
             "dataset='folder'")
    _require_dir(data.hr_dir, "config.data.hr_dir")
    if data.lr_dir:
      _require_dir(data.lr_dir, "config.data.lr_dir")
  if data.dataset == "prepared":
    _require(bool(data.prepared_dir), "config.data.prepared_dir: set it to a folder "
             "written by `python -m esrgan_jax.prepare` for dataset='prepared'")
    _require_dir(data.prepared_dir, "config.data.prepared_dir")
  if data.dataset == "div2k":
    name_scale = _tfds_name_scale(data.tfds_name)
    _require(name_scale in (None, scale), f"config.data.tfds_name={data.tfds_name!r} holds "
             f"x{name_scale} LR images but the model's scale is {scale} (config.model.scale)")
  _require(data.num_workers is None or data.num_workers > 0,
           f"config.data.num_workers must be positive (or unset), got {data.num_workers}")
  _require(data.prefetch_batches > 0, "config.data.prefetch_batches must be positive")


def _validate_realworld(config: ml_collections.ConfigDict) -> None:
  """lr_source, the GT-only crop, the device degradation and the pool, and the USM targets."""
  data, loss = config.data, config.loss
  _require(data.lr_source in LR_SOURCES,
           f"config.data.lr_source must be one of {LR_SOURCES}, got {data.lr_source!r}")
  if data.lr_source != "degradation":
    for name in ("l1_gt_usm", "percep_gt_usm", "gan_gt_usm"):
      _require(not loss[name], f"config.loss.{name} needs config.data.lr_source="
               f"'degradation' (the USM-sharpened GT is made on the device with the LR)")
    return
  scale, patch, size = config.model.scale, data.patch_size, data.crop_pad_size
  _require(isinstance(size, int) and size > 0 and size % scale == 0,
           f"config.data.crop_pad_size={size!r} must be a positive multiple of "
           f"config.model.scale={scale}")
  _require(patch <= size, f"config.data.patch_size={patch} must not exceed "
           f"config.data.crop_pad_size={size}: the training crop is cut from the GT square")
  _require(not data.lr_dir, f"config.data.lr_dir={data.lr_dir}: lr_source='degradation' makes "
           "the LR on the device; unset lr_dir (or use lr_source='bicubic')")
  degradation = config.degradation
  _require(degradation.scale == scale, f"config.degradation.scale={degradation.scale} must "
           f"equal config.model.scale={scale}")
  batch = config.train.batch_size
  group = degradation.pool_batch_size
  _require(isinstance(group, int) and group >= 0 and (group == 0 or batch % group == 0),
           f"config.degradation.pool_batch_size={group!r} must be 0 (the whole batch) or divide "
           f"config.train.batch_size={batch}")
  group = group or batch
  pool = degradation.pool_size
  _require(isinstance(pool, int) and pool >= 0 and pool % group == 0,
           f"config.degradation.pool_size={pool!r} must be 0 (no pool) or a positive multiple of "
           f"the {group} batch slots of each pool (config.degradation.pool_batch_size)")
  _require(isinstance(degradation.per_sample_choices, bool),
           "config.degradation.per_sample_choices must be True or False")


def _tfds_name_scale(tfds_name: str) -> Optional[int]:
  """The SR factor a TFDS name such as 'div2k/bicubic_x4' holds, or None when it does not say."""
  match = re.search(r"_x(\d+)$", tfds_name.split(":")[0])
  return int(match.group(1)) if match else None


def validate_eval_sets(data: ml_collections.ConfigDict) -> None:
  """config.data.eval_sets: each a {hr_dir, lr_dir} of folder paths, hr_dir's with images."""
  for name, spec in data.eval_sets.items():
    field = f"config.data.eval_sets.{name}"
    _require(isinstance(spec, (dict, ml_collections.ConfigDict)),
             f"{field} must be a dict of hr_dir (and lr_dir), got {spec!r}")
    for key in ("hr_dir", "lr_dir"):
      _require(isinstance(spec.get(key) or "", str),
               f"{field}.{key} must be a folder's path, got {spec.get(key)!r}")
    _require(bool(spec.get("hr_dir")), f"{field}.hr_dir is not set")
    _require_dir(spec.hr_dir, f"{field}.hr_dir")
    _require_images(spec.hr_dir, f"{field}.hr_dir")
    if spec.get("lr_dir"):
      _require_dir(spec.lr_dir, f"{field}.lr_dir")


def _require_dir(path: str, field: str) -> None:
  _require(epath.Path(path).is_dir(), f"{field}: {path} is not a directory")


def _require_images(path: str, field: str) -> None:
  """An evaluation folder without images would fail only at the first evaluation."""
  try:
    list_images(path)
  except (ImageFolderError, OSError) as e:
    raise ConfigError(f"{field}: {e}") from None


def _validate_gan(config: ml_collections.ConfigDict) -> None:
  name = config.discriminator.name
  _require(name in DISCRIMINATORS, f"config.discriminator.name must be one of "
           f"{sorted(DISCRIMINATORS)}, got {name!r}")
  _require(config.discriminator.num_feat > 0, f"config.discriminator.num_feat must be positive, "
           f"got {config.discriminator.num_feat}")
  if name == "vgg_style":
    _require(config.data.patch_size in VGG_INPUT_SIZES,
             f"config.data.patch_size={config.data.patch_size} does not fit the vgg_style "
             f"discriminator, which takes {VGG_INPUT_SIZES} pixel patches")
  layers = dict(config.loss.perceptual_layers)
  unknown = sorted(set(layers) - set(VGG19_LAYERS))
  _require(layers and not unknown, f"config.loss.perceptual_layers: unknown or no layers "
           f"{unknown or layers}; choose from {list(VGG19_LAYERS)}")
  _require(config.loss.gan_type in GAN_TYPES, f"config.loss.gan_type must be one of {GAN_TYPES}, "
           f"got {config.loss.gan_type!r}")
  _require(config.loss.perceptual_criterion in ("l1", "l2", "mse"),
           "config.loss.perceptual_criterion must be 'l1' or 'l2'")
  value = config.loss.vgg19_weights
  _require(not value or epath.Path(value).exists(),
           f"config.loss.vgg19_weights: {value} does not exist")
