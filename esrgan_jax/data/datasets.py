"""Where training and evaluation images come from: bundled photos, folders, DIV2K via TFDS.

A training *source* is an indexed list of images, the same list on every process, with the
interface `Source`: `ImageSource` for image files (bundled photos, folders, and
prepared.PreparedSource, which extends it), `TfdsSource` for TFDS records. Sampling, sharding,
cropping and the policies for bad or small images live in pipeline.py; this file only finds,
pairs and decodes.

Bundled default data: real photographs that ship inside scikit-image's wheel (read from the
installed package's data folder, never fetched by pooch). Licences, from scikit-image's docstrings:
  astronaut.png          Eileen Collins, NASA Great Images database; public domain.
  coffee.png             Rachel Michetti for Pikolo Espresso Bar; CC0.
  chelsea.png            Stefan van der Walt; CC0.
  rocket.jpg             SpaceX launch photo of DSCOVR; released into the public domain.
  hubble_deep_field.jpg  NASA / HubbleSite; public domain.
  ihc.png                IHC-stained colonic glands, CMMI; no known copyright restrictions.
  retina.jpg             Mikael Haggstrom, Wikimedia Commons; CC0.
  motorcycle_left.png    Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014), as
                         redistributed by scikit-image; no licence stated, cite the paper.
  camera.png             Lav Varshney; CC0 (grayscale).
  cell.png               Paul Mueller et al., Optics Express 26(8), 2018, a quantitative phase
                         image of a cell; CC0 (grayscale).
  moon.png               surface of the moon; no licence stated by scikit-image (grayscale).
Two of them are held out as the default evaluation set. The three grayscale ones
(BUNDLED_FLAT_PHOTOS) are read as RGB and used only where a config names them; the other
grayscale and the synthetic images of skimage.data are not used.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from esrgan_jax import cli
from esrgan_jax.data.augment import mod_crop
from esrgan_jax.data.bicubic import bicubic_downsample_uint8
from esrgan_jax.data.images import ImageReadError, list_images, read_image

BUNDLED_TRAIN_PHOTOS = ("astronaut.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                        "motorcycle_left.png", "retina.jpg")
# Grayscale photographs with large flat areas, used only where a config names them (the
# real-world demos): the colour ones have almost no flat region at a dark sky's levels
# (python -m benchmarks.realworld_tone).
BUNDLED_FLAT_PHOTOS = ("camera.png", "cell.png", "moon.png")
BUNDLED_EVAL_PHOTOS = ("chelsea.png", "rocket.jpg")

# DIV2K's archives, as TFDS's div2k builder names them, for the "prepare it offline" message.
_DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"


class PairSizeError(cli.UserError, ValueError):
  """An LR image is not the HR image downscaled by the SR factor."""


class DatasetNotFoundError(cli.UserError, FileNotFoundError):
  """Data the config points to is missing: a TFDS dataset not prepared where we looked (and
  not preparable), a prepared folder's manifest, an HR image's LR file, the bundled photos."""


@dataclasses.dataclass(frozen=True)
class EvalImage:
  name: str
  lr: np.ndarray  # uint8 HxWx3
  hr: np.ndarray  # uint8 (H*scale)x(W*scale)x3


# ---------------------------------------------------------------------------------------------
# Matching HR and LR images.


def pair_images(hr: np.ndarray, lr: np.ndarray, scale: int, hr_name: str,
                lr_name: str) -> np.ndarray:
  """The HR image cropped to exactly `scale` times the LR image; PairSizeError if impossible.

  An LR image made by MATLAB's imresize from an HR image whose size is not a multiple of the
  scale is floor(H / scale) rows tall when the HR was mod-cropped first (BasicSR's GTmod12 /
  LRbicx4 folders) -- then the HR's extra rows (fewer than `scale`) are cropped as BasicSR does.
  Anything else means the files do not belong together.
  """
  hr_h, hr_w = hr.shape[:2]
  lr_h, lr_w = lr.shape[:2]
  if not (lr_h * scale <= hr_h < (lr_h + 1) * scale and lr_w * scale <= hr_w < (lr_w + 1) * scale):
    raise PairSizeError(f"{hr_name} ({hr_h}x{hr_w}) and {lr_name} ({lr_h}x{lr_w}): the HR image is "
                        f"not {scale}x the LR image (expected LR {hr_h // scale}x{hr_w // scale})")
  return hr[:lr_h * scale, :lr_w * scale]


def _lr_name_candidates(hr_stem: str, scale: int) -> List[str]:
  # Same name (BasicSR, Set5/Set14 GTmod12 vs LRbicx4), DIV2K's "0001x4", and the
  # "img_001_SRF_4_HR" / "_LR" naming of the Huang et al. Urban100/BSD100 release.
  candidates = [hr_stem, f"{hr_stem}x{scale}"]
  if hr_stem.endswith("_HR"):
    candidates.append(hr_stem[:-3] + "_LR")
  return candidates


def match_lr_paths(hr_paths: Sequence[str], lr_dir: str, scale: int) -> List[str]:
  """For each HR file, the LR file of the same image in `lr_dir` (see _lr_name_candidates)."""
  lr_by_stem = {}
  for path in list_images(lr_dir):
    lr_by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], path)
  lr_paths = []
  for hr_path in hr_paths:
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    candidates = _lr_name_candidates(stem, scale)
    found = next((lr_by_stem[c] for c in candidates if c in lr_by_stem), None)
    if found is None:
      raise DatasetNotFoundError(f"{hr_path}: no LR image for it in {lr_dir} (looked for "
                                 f"{', '.join(repr(c + '.*') for c in candidates)})")
    lr_paths.append(found)
  return lr_paths


# ---------------------------------------------------------------------------------------------
# Training sources.


class Source(Protocol):
  """What the training pipeline reads images through."""

  description: str  # for log lines
  num_images: int

  def name(self, index: int) -> str:
    """Image `index` in messages."""

  def lr_name(self, index: int) -> str:
    """Its LR image in messages."""

  def prefetch_range(self, start: int, stop: int) -> None:
    """Called once with the images this process will use."""

  def load(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(HR, LR or None) as uint8 HxWx3 arrays; ImageReadError for an unreadable image."""

  def release_prefetched(self) -> None:
    """Called once every image has been loaded and cached."""


class ImageSource(Source):
  """HR image files, optionally with matching LR files; images are read when asked for."""

  def __init__(self, hr_paths: Sequence[str], lr_paths: Optional[Sequence[str]] = None,
               description: str = "folder"):
    if lr_paths is not None and len(lr_paths) != len(hr_paths):
      raise ValueError(f"{description}: {len(hr_paths)} HR but {len(lr_paths)} LR files")
    self.hr_paths = list(hr_paths)
    self.lr_paths = None if lr_paths is None else list(lr_paths)
    self.description = description

  @property
  def num_images(self) -> int:
    return len(self.hr_paths)

  def name(self, index: int) -> str:
    return self.hr_paths[index]

  def lr_name(self, index: int) -> str:
    if self.lr_paths is None:
      return f"bicubic LR of {self.name(index)}"
    return self.lr_paths[index]

  def read(self, path: str) -> np.ndarray:
    """One file as uint8 HxWx3 (subclasses read other formats)."""
    return read_image(path)

  def load(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    hr = self.read(self.hr_paths[index])
    lr = None if self.lr_paths is None else self.read(self.lr_paths[index])
    return hr, lr

  def prefetch_range(self, start: int, stop: int) -> None:
    del start, stop  # Files are read one at a time by `load`.

  def release_prefetched(self) -> None:
    pass


def bundled_photo_dir() -> str:
  """scikit-image's data folder inside the installed wheel (no download involved)."""
  import skimage.data  # Imported here: only the bundled dataset needs scikit-image.
  return os.path.dirname(skimage.data.__file__)


def bundled_photo_paths(names: Sequence[str]) -> List[str]:
  directory = bundled_photo_dir()
  paths = [os.path.join(directory, name) for name in names]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise DatasetNotFoundError(
        f"bundled photographs missing from scikit-image's wheel: {missing}; "
        "reinstall scikit-image (pip install --force-reinstall scikit-image)")
  return paths


def bundled_source(names: Sequence[str] = ()) -> ImageSource:
  """The bundled training photos, or those of them named (config.data.bundled_photos)."""
  known = BUNDLED_TRAIN_PHOTOS + BUNDLED_FLAT_PHOTOS
  unknown = sorted(set(names) - set(known))
  if unknown:
    raise cli.ConfigError(f"config.data.bundled_photos: {', '.join(unknown)} not among the "
                          f"bundled training photos {known}")
  return ImageSource(bundled_photo_paths(names or BUNDLED_TRAIN_PHOTOS),
                     description="bundled photographs")


def folder_source(hr_dir: str, lr_dir: Optional[str], scale: int) -> ImageSource:
  """All images in hr_dir (sorted by name), paired with lr_dir's when it is given."""
  hr_paths = list_images(hr_dir)
  lr_paths = match_lr_paths(hr_paths, lr_dir, scale) if lr_dir else None
  return ImageSource(hr_paths, lr_paths, description=hr_dir)


class TfdsSource(Source):
  """The train split of an HR/LR TFDS dataset such as div2k/bicubic_x4.

  TFDS reads records in sequence, not by index, so `prefetch_range` reads this process's slice
  of the split once, as encoded PNG bytes (a fraction of the decoded size), and `load` decodes
  one record on demand.
  Files are read in order, one at a time (interleave_cycle_length=1), so that record i is the
  same image whatever slice it is read in: the sampling of pipeline.py relies on it.
  """

  def __init__(self, builder, split: str = "train"):
    self._builder = builder
    self._split = split
    self.description = f"{builder.info.full_name} {split}"
    self.num_images = builder.info.splits[split].num_examples
    self._records: Dict[int, Tuple[str, bytes, bytes]] = {}

  def name(self, index: int) -> str:
    record = self._records.get(index)
    return f"{self.description}[{index}]" + (f" ({record[0]})" if record else "")

  def lr_name(self, index: int) -> str:
    return f"the LR image of {self.name(index)}"

  def prefetch_range(self, start: int, stop: int) -> None:
    import tensorflow_datasets as tfds
    dataset = self._builder.as_dataset(
        split=f"{self._split}[{start}:{stop}]", shuffle_files=False,
        decoders={"hr": tfds.decode.SkipDecoding(), "lr": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=True))
    for offset, record in enumerate(tfds.as_numpy(dataset)):
      self._records[start + offset] = (record["tfds_id"].decode(), record["hr"], record["lr"])

  def release_prefetched(self) -> None:
    """Drops the encoded images (kept: their ids) once the pipeline has cached them decoded."""
    self._records = {i: (tfds_id, b"", b"") for i, (tfds_id, _, _) in self._records.items()}

  def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    if index not in self._records:
      raise IndexError(f"{self.description}[{index}] was not read by this process")
    _, hr_png, lr_png = self._records[index]
    try:
      # The same decoder TFDS's Image feature uses; channels=3 as the feature stores RGB.
      hr = tf.io.decode_image(hr_png, channels=3, expand_animations=False).numpy()
      lr = tf.io.decode_image(lr_png, channels=3, expand_animations=False).numpy()
    except tf.errors.OpError as e:
      raise ImageReadError(f"{self.name(index)}: not a readable image ({e.message})") from None
    return hr, lr


def _preparation_help(builder, tfds_name: str, data_dir: Optional[str]) -> str:
  archives = sorted(os.path.basename(url)
                    for url in getattr(builder.builder_config, "download_urls", {}).values())
  root = data_dir or "~/tensorflow_datasets"
  return (f"prepare it with `tfds build {tfds_name} --data_dir={root}` (downloads from "
          f"{_DIV2K_URL}), or offline: put {', '.join(archives) or 'the archives'} in a folder M "
          f"and run `tfds build {tfds_name} --data_dir={root} --manual_dir=M` (or set "
          "config.data.tfds_manual_dir=M), or copy an already prepared data dir there")


def open_tfds_builder(tfds_name: str, data_dir: Optional[str] = None,
                      manual_dir: Optional[str] = None, prepare: bool = False):
  """The TFDS builder of a prepared HR/LR dataset; a clear error when it is not prepared.
  (config_checks checks that the name's scale is the model's.)

  When the data is missing and `prepare` is set it is prepared as `tfds build` would (from the
  archives in `manual_dir` when given, else downloaded); otherwise, or when that fails,
  DatasetNotFoundError names the directory looked in and how to prepare it.
  """
  import tensorflow_datasets as tfds  # Heavy; only the TFDS datasets need it.
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception as e:  # Unknown name or config: TFDS lists the known ones in its message.
    raise cli.ConfigError(f"config.data.tfds_name={tfds_name!r}: {e}") from None
  if builder.is_prepared():
    return builder
  help_text = _preparation_help(builder, tfds_name, data_dir)
  if not prepare:
    raise DatasetNotFoundError(f"TFDS dataset {tfds_name} is not prepared in {builder.data_dir}; "
                               f"{help_text}")
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:
    reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise DatasetNotFoundError(f"TFDS dataset {tfds_name} is not prepared in {builder.data_dir} "
                               f"and preparing it failed ({reason}); {help_text}") from e
  return builder


# ---------------------------------------------------------------------------------------------
# Evaluation sets.


def load_eval_images(hr_paths: Sequence[str], lr_paths: Optional[Sequence[str]], scale: int,
                     on_bad_image: str = "error", warn=None, make_lr=None) -> List[EvalImage]:
  """EvalImages of HR files and their LR files, or LR made from the mod-cropped HR: MATLAB
  bicubic, or `make_lr(hr, i)` for hr_paths[i] (i counts skipped files too, as a listing does).

  `warn(message)` reports a skipped unreadable file when on_bad_image == 'skip'.
  """
  images = []
  for i, hr_path in enumerate(hr_paths):
    name = os.path.splitext(os.path.basename(hr_path))[0]
    try:
      hr = read_image(hr_path)
      lr = read_image(lr_paths[i]) if lr_paths is not None else None
    except ImageReadError as e:
      if on_bad_image != "skip":
        raise
      if warn is not None:
        warn(f"skipping unreadable evaluation image: {e}")
      continue
    if lr is None:
      hr = mod_crop(hr, scale)
      if min(hr.shape[:2]) < scale:
        raise PairSizeError(f"{hr_path}: {hr.shape[0]}x{hr.shape[1]} is too small for x{scale}")
      lr = make_lr(hr, i) if make_lr is not None else bicubic_downsample_uint8(hr, scale)
    else:
      hr = pair_images(hr, lr, scale, hr_path, lr_paths[i])
    images.append(EvalImage(name=name, lr=lr, hr=hr))
  return images


def eval_set_paths(hr_dir: str, lr_dir: Optional[str], scale: int,
                   max_images: Optional[int] = None) -> Tuple[List[str], Optional[List[str]]]:
  """(HR paths, LR paths or None) of an evaluation folder such as Set5's, sorted by name."""
  hr_paths = list_images(hr_dir)
  if max_images:
    hr_paths = hr_paths[:max_images]
  lr_paths = match_lr_paths(hr_paths, lr_dir, scale) if lr_dir else None
  return hr_paths, lr_paths
