"""The training source of a folder written by `python -m esrgan_jax.prepare` (dataset='prepared').

A datasets.ImageSource whose images are the sub-images in the manifest's order, which is what the
pipeline's sampling indexes; .npy sub-images are read as arrays. With LR sub-images (prepared
with --lr_dir) `load` gives both; otherwise the pipeline makes the LR on the fly (MATLAB bicubic)
from the HR sub-image.
"""

import json
import os
from typing import Optional

import numpy as np

from esrgan_jax import cli
from esrgan_jax.data.datasets import DatasetNotFoundError, ImageSource
from esrgan_jax.data.images import ImageReadError, read_image

MANIFEST = "prepared.json"  # written last by esrgan_jax.prepare
_HELP = "write one with `python -m esrgan_jax.prepare SRC OUT`"


class PreparedDataError(cli.UserError, ValueError):
  """A prepared folder's manifest is unreadable or does not match its sub-images."""


def read_array(path: str) -> np.ndarray:
  """A sub-image saved as .npy: uint8 HxWx3, or ImageReadError naming the file."""
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise ImageReadError(f"{path}: not a readable .npy sub-image ({e})") from None
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
    raise ImageReadError(f"{path}: expected uint8 HxWx3, found {array.dtype} {array.shape}")
  return array


class PreparedSource(ImageSource):
  """The sub-images listed in `directory`/prepared.json; each is read when asked for."""

  def __init__(self, directory: str, scale: Optional[int] = None):
    manifest_path = os.path.join(directory, MANIFEST)
    try:
      with open(manifest_path) as f:
        manifest = json.load(f)
    except FileNotFoundError:
      raise DatasetNotFoundError(f"config.data.prepared_dir={directory!r}: no {MANIFEST} in it; "
                                 f"{_HELP}") from None
    except (OSError, ValueError) as e:
      raise PreparedDataError(f"{manifest_path}: not a readable manifest ({e}); {_HELP}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not files:
      raise PreparedDataError(f"{manifest_path}: lists no sub-images; {_HELP}")
    paths = [os.path.join(directory, name) for name in files]
    lr_files = manifest.get("lr_files")
    if lr_files is not None and scale is not None and manifest.get("scale") != scale:
      raise cli.ConfigError(
          f"config.data.prepared_dir={directory!r} holds x{manifest.get('scale')} LR sub-images "
          f"but the model's scale is {scale}")
    if lr_files is not None and len(lr_files) != len(files):
      raise PreparedDataError(
          f"{manifest_path}: {len(files)} sub-images but {len(lr_files)} LR ones")
    lr_paths = None if lr_files is None else [os.path.join(directory, n) for n in lr_files]
    description = (f"{directory} (sub-images {manifest.get('crop_size')} px every "
                   f"{manifest.get('step')} px of {manifest.get('source')})")
    super().__init__(paths, lr_paths, description)
    self.manifest = manifest

  def read(self, path: str) -> np.ndarray:
    return read_array(path) if path.endswith(".npy") else read_image(path)


def prepared_source(directory: str, scale: Optional[int] = None) -> PreparedSource:
  """config_checks has made sure `directory` is set and exists; its contents are checked here."""
  return PreparedSource(directory, scale)
