"""Evaluation: PSNR/SSIM on the Y channel (and RGB PSNR) of every configured set, and eval mode.

Used by the trainer's periodic evaluation and by `main.py` in eval mode, which restores a
checkpoint and writes a table (console, JSON, TensorBoard) plus LR | bicubic | SR | HR pictures.
Every result carries the bicubic baseline (MATLAB bicubic upscaling of the same LR, measured on the
same crop), so a number can always be read against "doing nothing".

Perceptual metrics join when config.eval names their files: LPIPS (`lpips_weights`), DISTS
(`dists_weights`) and NIQE (`niqe_params`) per image, FID / KID / IS (`inception_weights`) over
the set, on `fid_grid` x `fid_grid` crops of `fid_crop_size` pixels per image (metrics/fid.py).
All are measured on the image without its `scale`-pixel border, like PSNR; every header says which
way is better. The metric objects are loaded once per file and run on the same cached jitted
programs at every evaluation; bicubic's values (and its and the HR images' Inception features) are
computed once per run.
"""

import functools
import os
import weakref
from typing import Any, Callable, NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from esrgan_jax import cli, metrics
from esrgan_jax.data import bicubic, images
from esrgan_jax.data.eval_sets import create_eval_sets, eval_lr_sources
from esrgan_jax.evaluation import comparison, reports
from esrgan_jax.evaluation.reports import SetResult
from esrgan_jax.inference import tiling
from esrgan_jax.inference.apply import apply_generator
from esrgan_jax.metrics import dists, fid, lpips, naturalness
from esrgan_jax.models import COMPUTE_DTYPES
from esrgan_jax.models.span import SPAN
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights

METRIC_NAMES = ("psnr_y", "ssim_y", "psnr_rgb")
EVAL_MODE_SUBDIR = "eval_mode"  # eval mode's outputs, apart from the training run's WORKDIR/eval


class Extras(NamedTuple):
  """The configured perceptual metrics: each None when its file is not configured."""
  lpips: Any = None  # lpips.LpipsMetric
  niqe: Any = None  # naturalness.NiqeParams
  fid: Any = None  # fid.FidMetric
  dists: Any = None  # dists.DistsMetric

  def key(self) -> tuple:
    return tuple(id(m) if m is not None else None for m in self)


def make_generate_fn(generator, params) -> Callable[[np.ndarray], np.ndarray]:
  """An NHWC float [0, 1] -> NHWC float apply on this process's first local device.

  It runs `apply_generator`, whose compiled programs are keyed on (architecture, input
  shape): the evaluations of a run after the first, and every checkpoint of one architecture,
  reuse them. Evaluation runs process by process on different images, so it must not use the
  global mesh.
  """
  device = jax.local_devices()[0]
  params = _gather_to_host(params)
  # A SPAN trained in its branch form runs folded: the same function, one conv per Conv3XC.
  # RRDBNet keeps its own module (remat_blocks and dense_block are not in its record).
  if isinstance(generator, SPAN) and not generator.deploy:
    generator, params = generator_weights.inference_model_and_params(
        generator_weights.arch_of(generator), params, dtype=generator.dtype)
  params = jax.device_put(params, device)
  return lambda batch: np.asarray(
      apply_generator(generator, params, jax.device_put(batch, device)))


def _gather_to_host(tree):
  """A host copy of possibly sharded (FSDP) or multi-process arrays."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)


def input_multiple(generator) -> int:
  """The size `generator`'s input is padded to a multiple of (RRDBNet x1/x2 only), as upscale."""
  return tiling.generator_multiple(generator_weights.arch_of(generator))


def super_resolve(generate_fn, lr: np.ndarray, scale: int, tile: int, tile_pad: int,
                  multiple: Optional[int] = None) -> np.ndarray:
  """uint8 LR HxWx3 -> uint8 SR, rounded as the field's evaluation scripts do (images.to_pixels);
  `multiple` as tiling.upscale_tiled's (default: RRDBNet's at `scale`)."""
  sr = tiling.upscale_tiled(generate_fn, lr.astype(np.float32) / 255.0, scale, tile, tile_pad,
                            multiple=multiple)
  return images.to_pixels(sr)


def image_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
  return {
      "psnr_y": float(metrics.psnr(sr, hr, crop_border=scale, test_y_channel=True)),
      "ssim_y": float(metrics.ssim(sr, hr, crop_border=scale, test_y_channel=True)),
      "psnr_rgb": float(metrics.psnr(sr, hr, crop_border=scale, test_y_channel=False)),
  }


def _inner(image: np.ndarray, scale: int) -> np.ndarray:
  return image[scale:-scale, scale:-scale] if scale else image


def _niqe(image: np.ndarray, params, scale: int) -> float:
  try:
    return naturalness.niqe(image, params, crop_border=scale)
  except ValueError:
    return float("nan")  # an image under two 96x96 blocks has no NIQE; the mean skips it


def _measure(sr: np.ndarray, hr: np.ndarray, scale: int, extras: Extras) -> dict[str, float]:
  row = image_metrics(sr, hr, scale)
  if extras.lpips:
    row[extras.lpips.name] = extras.lpips(_inner(sr, scale), _inner(hr, scale))
  if extras.dists:
    row[extras.dists.name] = extras.dists(_inner(sr, scale), _inner(hr, scale))
  if extras.niqe:
    row["niqe"] = _niqe(sr, extras.niqe, scale)
  return row


def _metric_names(extras: Extras) -> tuple[str, ...]:
  return (METRIC_NAMES + ((extras.lpips.name,) if extras.lpips else ())
          + ((extras.dists.name,) if extras.dists else ())
          + (("niqe",) if extras.niqe else ()))


# id(EvalImage) -> (weak reference to it, what was measured, metric row, bicubic picture or None,
# Inception (features, logits) of the bicubic image and features of the HR image, or None).
# Bicubic upscaling of a fixed image never changes, so a run measures it once, at its first
# evaluation; the weak reference drops the entry with the image and guards against reused ids.
_BICUBIC_CACHE: dict[int, tuple] = {}


def _inception_features(fid_metric, image: np.ndarray, scale: int, name: str) -> np.ndarray:
  """(crops, 2048 + 1008): pool features then unbiased logits, one array to gather."""
  try:
    return np.concatenate(fid_metric.features(_inner(image, scale)), axis=1)
  except ValueError as e:  # an evaluation image smaller than the crops
    raise cli.ConfigError(
        f"config.eval.fid_crop_size: evaluation image {name}: {e}") from None


def _bicubic_baseline(item, scale: int, extras: Extras, keep_picture: bool):
  """(metric row, bicubic picture if keep_picture, Inception outputs of bicubic and HR or None)
  of MATLAB-bicubic upscaling of item.lr."""
  key = (scale, extras.key())
  entry = _BICUBIC_CACHE.get(id(item))
  if (entry is not None and entry[0]() is item and entry[1] == key
      and (entry[3] is not None or not keep_picture)):
    return entry[2], entry[3], entry[4]
  upscaled = bicubic.imresize(item.lr, output_shape=item.hr.shape[:2])
  row = _measure(upscaled, item.hr, scale, extras)
  inception = None
  if extras.fid:
    inception = (_inception_features(extras.fid, upscaled, scale, item.name),
                 _inception_features(extras.fid, item.hr, scale, item.name))
  image_id = id(item)
  reference = weakref.ref(item, lambda _: _BICUBIC_CACHE.pop(image_id, None))
  _BICUBIC_CACHE[image_id] = (reference, key, row, upscaled if keep_picture else None, inception)
  return row, (upscaled if keep_picture else None), inception


def _labels(row: dict[str, float], baseline: dict[str, float], names) -> tuple[str, ...]:
  """Captions: PSNR-Y (named: the pictures are RGB), and each perceptual metric with its
  direction, of bicubic and SR."""
  def caption(method, values):
    extra = [f"{m.split('_')[0].upper()}{reports.direction(m)} {values[m]:.3f}" for m in names
             if m not in METRIC_NAMES]
    return ", ".join([f"{method} PSNR-Y {values['psnr_y']:.2f} dB"] + extra)
  return ("LR", caption("bicubic", baseline), caption("SR", row), "HR")


def _gather(values: np.ndarray) -> np.ndarray:
  """Rows filled by each process (NaN elsewhere), complete on every process."""
  if jax.process_count() == 1:
    return values
  # NaN marks another process's images; fmax keeps the one real value of each row.
  return np.fmax.reduce(multihost_utils.process_allgather(values), axis=0)


def evaluate_set(generate_fn, eval_images, scale: int, tile: int, tile_pad: int,
                 num_comparisons: int, lpips_metric=None, niqe_params=None,
                 fid_metric=None, dists_metric=None,
                 multiple: Optional[int] = None) -> SetResult:
  """Each process evaluates images i::process_count; the values are gathered on every process.

  With `lpips_metric` (an `lpips.LpipsMetric`) and `niqe_params` (`naturalness.NiqeParams`),
  LPIPS and NIQE join the per-image metrics; with `fid_metric` (`fid.FidMetric`), FID, KID and IS
  of the set; with `dists_metric` (`dists.DistsMetric`), DISTS per image; all on the crop PSNR
  sees. The bicubic baseline is measured the same way (and
  cached: see `_bicubic_baseline`).
  """
  extras = Extras(lpips_metric, niqe_params, fid_metric, dists_metric)
  count = len(eval_images)
  names = _metric_names(extras)
  # Columns: the model's metrics, then bicubic's, so one gather brings both.
  values = np.full((count, 2 * len(names)), np.nan, np.float64)
  inception = None
  if fid_metric:
    crops = fid_metric.grid**2
    # Per image and crop: SR, bicubic and HR outputs of the Inception.
    inception = np.full((count, 3, crops, fid.NUM_FEATURES + fid.NUM_CLASSES), np.nan)
  comparisons = {}
  for i in range(jax.process_index(), count, jax.process_count()):
    item = eval_images[i]
    sr = super_resolve(generate_fn, item.lr, scale, tile, tile_pad, multiple)
    row = _measure(sr, item.hr, scale, extras)
    baseline, upscaled, outputs = _bicubic_baseline(item, scale, extras, i < num_comparisons)
    values[i] = [row[m] for m in names] + [baseline[m] for m in names]
    if fid_metric:
      inception[i] = (_inception_features(fid_metric, sr, scale, item.name), *outputs)
    if i < num_comparisons:
      comparisons[item.name] = comparison.comparison_strip(
          item.lr, upscaled, sr, item.hr, labels=_labels(row, baseline, names))
  values = _gather(values)
  model, baseline = values[:, :len(names)], values[:, len(names):]
  per_image = {item.name: dict(zip(names, map(float, row)))
               for item, row in zip(eval_images, model)}
  bicubic_per_image = {item.name: dict(zip(names, map(float, row)))
                       for item, row in zip(eval_images, baseline)}
  set_metrics, bicubic_set_metrics = {}, {}
  if fid_metric:
    outputs = _gather(inception).reshape(count, 3, -1, inception.shape[-1]).transpose(1, 0, 2, 3)
    sr_out, bicubic_out, hr_out = (o.reshape(-1, o.shape[-1]) for o in outputs)
    split = fid.NUM_FEATURES
    hr_features = hr_out[:, :split]
    try:
      set_metrics = fid_metric.measure(sr_out[:, :split], sr_out[:, split:], hr_features)
      bicubic_set_metrics = fid_metric.measure(bicubic_out[:, :split], bicubic_out[:, split:],
                                               hr_features)
    except ValueError as e:  # one image of one crop: no covariance
      raise cli.ConfigError(f"config.eval.fid_grid: {e}") from None
  return SetResult(means=_column_means(model, names), per_image=per_image,
                   comparisons=comparisons, bicubic_means=_column_means(baseline, names),
                   bicubic_per_image=bicubic_per_image, set_metrics=set_metrics,
                   bicubic_set_metrics=bicubic_set_metrics)


def _column_means(values: np.ndarray, names) -> dict[str, float]:
  # NIQE is NaN on images too small for it; the others are always finite.
  means = {}
  for j, m in enumerate(names):
    finite = values[:, j][~np.isnan(values[:, j])]
    means[m] = float(np.mean(finite)) if len(finite) else float("nan")
  return means


@functools.cache
def _pair_metric(metric_class, path: str):
  """One LpipsMetric or DistsMetric (image_pairs.PairMetric) per weights directory: loaded once
  per run, not at every evaluation."""
  return metric_class.from_dir(path)


@functools.cache
def _niqe_params(path: str):
  try:
    return naturalness.load_niqe_params(path)
  except naturalness.NiqeParamsError as e:  # the message names the file
    raise naturalness.NiqeParamsError(f"config.eval.niqe_params: {e}") from None


@functools.cache
def _fid_metric(path: str, crop_size: int, grid: int, kid_subsets: int, is_splits: int):
  """One FidMetric per weights and settings (config_checks validated them): loaded and compiled
  once per run."""
  return fid.FidMetric.from_dir(path, crop_size=crop_size, grid=grid, kid_subsets=kid_subsets,
                                is_splits=is_splits)


def configured_metrics(eval_config: ml_collections.ConfigDict) -> Extras:
  """The perceptual metrics config.eval asks for (lpips_weights, niqe_params,
  inception_weights, dists_weights), each loaded once per process."""
  lpips_weights = eval_config.lpips_weights
  niqe_params = eval_config.niqe_params
  inception_weights = eval_config.inception_weights
  dists_weights = eval_config.dists_weights
  return Extras(
      _pair_metric(lpips.LpipsMetric, os.fspath(lpips_weights)) if lpips_weights else None,
      _niqe_params(os.fspath(niqe_params)) if niqe_params else None,
      _fid_metric(os.fspath(inception_weights), eval_config.fid_crop_size, eval_config.fid_grid,
                  eval_config.kid_subsets, eval_config.is_splits) if inception_weights else None,
      _pair_metric(dists.DistsMetric, os.fspath(dists_weights)) if dists_weights else None)


def evaluate_sets(generate_fn, eval_sets: dict[str, Any], scale: int,
                  eval_config: ml_collections.ConfigDict,
                  multiple: Optional[int] = None) -> dict[str, SetResult]:
  """`multiple`: the generator's input multiple (`input_multiple`); default RRDBNet's."""
  extras = configured_metrics(eval_config)
  return {name: evaluate_set(generate_fn, items, scale, eval_config.tile, eval_config.tile_pad,
                             eval_config.num_comparison_images, *extras, multiple=multiple)
          for name, items in eval_sets.items()}


def _checkpoint_to_evaluate(config: ml_collections.ConfigDict, workdir: str) -> epath.Path:
  """The directory to load: a generator checkpoint, one step's directory, or a training workdir
  (whose newest readable step is then used, past a damaged latest one).

  config.eval.checkpoint may be a generator checkpoint or a training workdir; without it the
  workdir's own checkpoints are used. config.eval.checkpoint_step (-1: the latest) picks the step
  of a training workdir.
  """
  path = epath.Path(config.eval.checkpoint or workdir)
  if config.eval.checkpoint and (not path.is_dir()
                                 or generator_weights.is_generator_checkpoint(path)):
    return path  # load_generator names what is wrong with a bad path
  try:
    if config.eval.checkpoint_step < 0:
      checkpoints.step_directories(path)  # names a workdir without checkpoints
      return path
    return checkpoints.find_step_directory(path, config.eval.checkpoint_step)
  except FileNotFoundError as error:
    hint = ("" if config.eval.checkpoint else
            "; eval mode reads a trained workdir, or --config.eval.checkpoint=DIR")
    raise generator_weights.CheckpointError(f"{error}{hint}") from error


def check_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Eval mode's one-line refusal of a missing checkpoint or a workdir without checkpoints,
  before anything (the workdir itself) is created."""
  path = _checkpoint_to_evaluate(config, workdir)
  if not path.exists():
    raise generator_weights.CheckpointError(f"{path}: no such checkpoint directory")


def eval_mode_dir(workdir: str, source: epath.Path, step: Optional[int]) -> epath.Path:
  """WORKDIR/eval_mode/step_N (or /<generator checkpoint name>): apart from WORKDIR/eval."""
  name = f"step_{step}" if step is not None else source.name
  return epath.Path(workdir) / EVAL_MODE_SUBDIR / name


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, SetResult]:
  """Eval mode: restore a generator, evaluate every set, write the table and pictures.

  Results go to `eval_mode_dir` (JSON and pictures) and to TensorBoard under WORKDIR/eval_mode at
  the checkpoint's own step, so the training run's WORKDIR/eval is never written over.
  """
  params, arch, source = generator_weights.load_generator_and_source(
      _checkpoint_to_evaluate(config, workdir))
  step = int(source.name) if source.name.isdigit() else None
  if arch["scale"] != config.model.scale:
    raise generator_weights.CheckpointError(
        f"{source}: checkpoint is a x{arch['scale']} model but config.model.scale is "
        f"{config.model.scale}")
  # make_generate_fn folds a SPAN into the form it runs in.
  generator = generator_weights.generator_from_arch(
      arch, dtype=COMPUTE_DTYPES[config.compute_dtype])
  eval_sets = create_eval_sets(config.data, scale=arch["scale"],
                               degradation=config.degradation)
  results = evaluate_sets(make_generate_fn(generator, params), eval_sets, arch["scale"],
                          config.eval, input_multiple(generator))
  if jax.process_index() == 0:
    out_dir = eval_mode_dir(workdir, source, step)
    reports.write(results, out_dir, out_dir.parent, source=str(source), step=step,
           lr_sources=eval_lr_sources(config.data))
    at_step = f" (step {step})" if step is not None else ""
    print(f"Evaluated {source}{at_step}; results in {out_dir}\n{reports.format_table(results)}")
  return results
