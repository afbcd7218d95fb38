"""The evaluation sets: whole images as uint8 LR / mod-cropped HR pairs, and how each LR was made.

`config.data.eval_sets` maps names to {hr_dir, lr_dir}; an empty mapping means the bundled
held-out photographs. Training's periodic evaluation and `--mode=eval` both read them here.
"""

from typing import Dict, List

from absl import logging

from esrgan_jax import cli
from esrgan_jax.data import datasets, degradations
from esrgan_jax.data import images as images_io


def create_eval_sets(data_config, *, scale: int,
                     degradation=None) -> Dict[str, List[datasets.EvalImage]]:
  """name -> whole images (uint8 LR and mod-cropped HR) of each evaluation set.

  `config.data.eval_sets` maps names to {hr_dir, lr_dir}; without an lr_dir the LR images are
  MATLAB-bicubic downscalings of the HR, or with data.eval_lr='degradation' the `degradation`
  config's LR of image i (seed data.eval_lr_seed, slot i). Empty: the bundled held-out photos.
  """
  max_images = data_config.eval_max_images
  warn = lambda message: logging.warning("%s", message)
  make_lr = None
  if data_config.eval_lr == "degradation":
    degrade_image = degradations.image_degrader(degradation)
    seed = data_config.eval_lr_seed
    make_lr = lambda hr, slot: degrade_image(hr, seed, slot)
  eval_sets = data_config.eval_sets
  if not eval_sets:
    hr_paths = datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS)[:max_images or None]
    _say_degrading("bundled", hr_paths, make_lr)
    return {"bundled": datasets.load_eval_images(hr_paths, None, scale, make_lr=make_lr)}
  result = {}
  for name, spec in eval_sets.items():
    field = f"config.data.eval_sets.{name}"
    hr_paths, lr_paths = _paths(field, spec, scale, max_images)
    _say_degrading(name, hr_paths if lr_paths is None else [], make_lr)
    images = datasets.load_eval_images(hr_paths, lr_paths, scale, data_config.on_bad_image, warn,
                                       make_lr)
    if not images:
      raise cli.ConfigError(f"{field}.hr_dir: no readable images in {spec.hr_dir}")
    result[name] = images
  return result


def _say_degrading(name: str, hr_paths, make_lr) -> None:
  """A line before the degradations run: minutes on a CPU (one program per image size)."""
  if make_lr is not None and hr_paths:
    logging.info("Making the degraded evaluation LR of %s (%d images)...", name, len(hr_paths))


def _paths(field: str, spec, scale: int, max_images):
  """eval_set_paths, its folder errors naming the config field (`...NAME.hr_dir: ...`) as well
  as the folder; the same exception types, for callers that catch them by their builtin base."""
  folder_errors = (images_io.ImageFolderError, FileNotFoundError, NotADirectoryError)
  try:
    hr_paths, _ = datasets.eval_set_paths(spec.hr_dir, None, scale, max_images)
  except folder_errors as e:
    raise type(e)(f"{field}.hr_dir: {e}") from None
  if not spec.get("lr_dir"):
    return hr_paths, None
  try:
    return hr_paths, datasets.match_lr_paths(hr_paths, spec.lr_dir, scale)
  except folder_errors as e:
    raise type(e)(f"{field}.lr_dir: {e}") from None


def eval_lr_sources(data_config) -> Dict[str, str]:
  """name -> how create_eval_sets made the LR of that set, for the results' provenance."""
  specs = data_config.eval_sets or {"bundled": {}}
  made = ("bicubic" if data_config.eval_lr != "degradation" else
          f"degradation, seed {data_config.eval_lr_seed}")
  return {name: f"files in {spec['lr_dir']}" if spec.get("lr_dir") else made
          for name, spec in specs.items()}
