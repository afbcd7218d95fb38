"""Evaluation: PSNR/SSIM on the Y channel (and RGB PSNR) of every configured set, and eval mode.

Used by the trainer's periodic evaluation and by `main.py` in eval mode, which restores a
checkpoint and writes a table (console, JSON, TensorBoard) plus LR | bicubic | SR | HR pictures.
Every result carries the bicubic baseline (MATLAB bicubic upscaling of the same LR, measured on the
same crop), so a number can always be read against "doing nothing".
"""

import functools
import json
import os
import weakref
from typing import Any, Callable, NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from clu import metric_writers
from etils import epath
from jax.experimental import multihost_utils

from esrgan_jax import checkpoints, comparison, inference, metrics, tiling
from esrgan_jax.metrics import lpips
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.data import bicubic, images, pipeline
from esrgan_jax.train_state import COMPUTE_DTYPES

METRIC_NAMES = ("psnr_y", "ssim_y", "psnr_rgb")
# Which way is better, for the table headers.
METRIC_DIRECTIONS = {"psnr_y": "\u2191", "ssim_y": "\u2191", "psnr_rgb": "\u2191"}
LOWER_IS_BETTER_PREFIXES = ("lpips",)
EVAL_MODE_SUBDIR = "eval_mode"  # eval mode's outputs, apart from the training run's WORKDIR/eval


class SetResult(NamedTuple):
  means: dict[str, float]  # metric name -> mean over the set's images
  per_image: dict[str, dict[str, float]]  # image name -> metric name -> value
  comparisons: dict[str, np.ndarray]  # image name -> labelled LR | bicubic | SR | HR picture
  bicubic_means: dict[str, float]  # the same metrics of bicubic upscaling
  bicubic_per_image: dict[str, dict[str, float]]


def make_generate_fn(generator, params) -> Callable[[np.ndarray], np.ndarray]:
  """An NHWC float [0, 1] -> NHWC float apply on this process's first local device.

  It runs `inference.apply_generator`, whose compiled programs are keyed on (architecture, input
  shape): the evaluations of a run after the first, and every checkpoint of one architecture,
  reuse them. Evaluation runs process by process on different images, so it must not use the
  global mesh.
  """
  device = jax.local_devices()[0]
  params = jax.device_put(_gather_to_host(params), device)
  return lambda batch: np.asarray(
      inference.apply_generator(generator, params, jax.device_put(batch, device)))


def _gather_to_host(tree):
  """A host copy of possibly sharded (FSDP) or multi-process arrays."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)


def super_resolve(generate_fn, lr: np.ndarray, scale: int, tile: int, tile_pad: int) -> np.ndarray:
  """uint8 LR HxWx3 -> uint8 SR, rounded as the field's evaluation scripts do."""
  sr = tiling.upscale_tiled(generate_fn, lr.astype(np.float32) / 255.0, scale, tile, tile_pad)
  return np.clip(np.round(sr * 255.0), 0, 255).astype(np.uint8)


def image_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
  return {
      "psnr_y": float(metrics.psnr(sr, hr, crop_border=scale, test_y_channel=True)),
      "ssim_y": float(metrics.ssim(sr, hr, crop_border=scale, test_y_channel=True)),
      "psnr_rgb": float(metrics.psnr(sr, hr, crop_border=scale, test_y_channel=False)),
  }


def _measure(sr: np.ndarray, hr: np.ndarray, scale: int, lpips_metric) -> dict[str, float]:
  row = image_metrics(sr, hr, scale)
  if lpips_metric:
    crop = (slice(scale, -scale),) * 2 if scale else (slice(None),) * 2
    row[lpips_metric.name] = lpips_metric(sr[crop], hr[crop])
  return row


# id(EvalImage) -> (weak reference to it, what was measured, metric row, bicubic picture or None).
# Bicubic upscaling of a fixed image never changes, so a run measures it once, at its first
# evaluation; the weak reference drops the entry with the image and guards against reused ids.
_BICUBIC_CACHE: dict[int, tuple] = {}


def _bicubic_baseline(item, scale: int, lpips_metric, keep_picture: bool):
  """(metric row, bicubic picture if keep_picture) of MATLAB-bicubic upscaling of item.lr."""
  key = (scale, id(lpips_metric) if lpips_metric else None)
  entry = _BICUBIC_CACHE.get(id(item))
  if (entry is not None and entry[0]() is item and entry[1] == key
      and (entry[3] is not None or not keep_picture)):
    return entry[2], entry[3]
  upscaled = bicubic.imresize(item.lr, output_shape=item.hr.shape[:2])
  row = _measure(upscaled, item.hr, scale, lpips_metric)
  image_id = id(item)
  reference = weakref.ref(item, lambda _: _BICUBIC_CACHE.pop(image_id, None))
  _BICUBIC_CACHE[image_id] = (reference, key, row, upscaled if keep_picture else None)
  return row, (upscaled if keep_picture else None)


def evaluate_set(generate_fn, eval_images, scale: int, tile: int, tile_pad: int,
                 num_comparisons: int, lpips_metric=None) -> SetResult:
  """Each process evaluates images i::process_count; the values are gathered on every process.

  With `lpips_metric` (an `lpips.LpipsMetric`), LPIPS joins the metrics, on the same crop. The
  bicubic baseline is measured the same way (and cached: see `_bicubic_baseline`).
  """
  count = len(eval_images)
  names = METRIC_NAMES + ((lpips_metric.name,) if lpips_metric else ())
  # Columns: the model's metrics, then bicubic's, so one gather brings both.
  values = np.full((count, 2 * len(names)), np.nan, np.float64)
  comparisons = {}
  for i in range(jax.process_index(), count, jax.process_count()):
    item = eval_images[i]
    sr = super_resolve(generate_fn, item.lr, scale, tile, tile_pad)
    row = _measure(sr, item.hr, scale, lpips_metric)
    baseline, upscaled = _bicubic_baseline(item, scale, lpips_metric, i < num_comparisons)
    values[i] = [row[m] for m in names] + [baseline[m] for m in names]
    if i < num_comparisons:
      labels = ("LR", f"bicubic {baseline['psnr_y']:.2f} dB", f"SR {row['psnr_y']:.2f} dB",
                "HR")
      comparisons[item.name] = comparison.comparison_strip(item.lr, upscaled, sr, item.hr,
                                                           labels=labels)
  if jax.process_count() > 1:
    # NaN marks another process's images; fmax keeps the one real value of each row.
    values = np.fmax.reduce(multihost_utils.process_allgather(values), axis=0)
  model, baseline = values[:, :len(names)], values[:, len(names):]
  per_image = {item.name: dict(zip(names, map(float, row)))
               for item, row in zip(eval_images, model)}
  bicubic_per_image = {item.name: dict(zip(names, map(float, row)))
                       for item, row in zip(eval_images, baseline)}
  return SetResult(means=_column_means(model, names), per_image=per_image,
                   comparisons=comparisons, bicubic_means=_column_means(baseline, names),
                   bicubic_per_image=bicubic_per_image)


def _column_means(values: np.ndarray, names) -> dict[str, float]:
  return {m: float(np.mean(values[:, j])) for j, m in enumerate(names)}


@functools.cache
def _lpips_metric(path: str):
  """One LpipsMetric per weights directory: loaded once per run, not at every evaluation."""
  return lpips.LpipsMetric.from_dir(path)


def evaluate_sets(generate_fn, eval_sets: dict[str, Any], scale: int,
                  eval_config: ml_collections.ConfigDict) -> dict[str, SetResult]:
  lpips_weights = eval_config.get("lpips_weights")
  lpips_metric = _lpips_metric(os.fspath(lpips_weights)) if lpips_weights else None
  return {name: evaluate_set(generate_fn, items, scale, eval_config.tile, eval_config.tile_pad,
                             eval_config.num_comparison_images, lpips_metric)
          for name, items in eval_sets.items()}


def scalar_summaries(results: dict[str, SetResult]) -> dict[str, float]:
  """eval/{set}/{metric} of the model and eval/{set}/bicubic_{metric} of the baseline.

  The baseline is written at every evaluation (from the cache), so TensorBoard draws it as a
  flat reference line beside the model's curve.
  """
  scalars = {}
  for set_name, result in results.items():
    scalars.update({f"eval/{set_name}/{m}": v for m, v in result.means.items()})
    scalars.update({f"eval/{set_name}/bicubic_{m}": v for m, v in result.bicubic_means.items()})
  return scalars


def headline_psnr(results: dict[str, SetResult]) -> float:
  """The value that ranks checkpoints: Y-channel PSNR on the first evaluation set."""
  return next(iter(results.values())).means["psnr_y"]


def _direction(metric: str) -> str:
  if metric in METRIC_DIRECTIONS:
    return METRIC_DIRECTIONS[metric]
  return "\u2193" if metric.startswith(LOWER_IS_BETTER_PREFIXES) else ""


def format_table(results: dict[str, SetResult]) -> str:
  """One row per (set, method): the model and its bicubic baseline; arrows say which way wins."""
  names = list(next(iter(results.values())).means)
  headers = [f"{m} {_direction(m)}".rstrip() for m in names]
  width = max(12, *(len(h) + 2 for h in headers))
  rows = [f"{'set':<16}{'images':>8}  {'method':<9}" + "".join(f"{h:>{width}}" for h in headers)]
  for name, result in results.items():
    for method, means in (("model", result.means), ("bicubic", result.bicubic_means)):
      rows.append(f"{name:<16}{len(result.per_image):>8}  {method:<9}"
                  + "".join(f"{means[m]:>{width}.4f}" for m in names))
  return "\n".join(rows)


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
    raise generator_weights.CheckpointError(str(error)) from error


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
  generator = generator_weights.generator_from_arch(
      arch, dtype=COMPUTE_DTYPES[config.compute_dtype])
  eval_sets = pipeline.create_eval_sets(config.data, scale=arch["scale"])
  results = evaluate_sets(make_generate_fn(generator, params), eval_sets, arch["scale"],
                          config.eval)
  if jax.process_index() == 0:
    out_dir = eval_mode_dir(workdir, source, step)
    _write(results, out_dir, out_dir.parent, source=str(source), step=step)
    at_step = f" (step {step})" if step is not None else ""
    print(f"Evaluated {source}{at_step}; results in {out_dir}\n{format_table(results)}")
  return results


def write_results(results: dict[str, SetResult], workdir: str, source: str, step: int = 0) -> None:
  """The training run's eval_results.json, TensorBoard scalars and images, and comparison PNGs,
  all under WORKDIR/eval. The caller shows the table (it is not printed here)."""
  out_dir = epath.Path(workdir) / "eval"
  _write(results, out_dir, out_dir, source, step)


def _write(results: dict[str, SetResult], out_dir: epath.Path, events_dir: epath.Path,
           source: str, step: Optional[int]) -> None:
  out_dir.mkdir(parents=True, exist_ok=True)
  summary = {"checkpoint": source, "step": step,
             "sets": {name: {"mean": r.means, "images": r.per_image,
                             "bicubic": {"mean": r.bicubic_means, "images": r.bicubic_per_image}}
                      for name, r in results.items()}}
  (out_dir / "eval_results.json").write_text(json.dumps(summary, indent=2))
  for set_name, result in results.items():
    for image_name, picture in result.comparisons.items():
      images.write_image(os.fspath(out_dir / f"{set_name}_{image_name}_comparison.png"), picture)
  # An exported generator has no training step; its one point is drawn at 0.
  writer = metric_writers.create_default_writer(os.fspath(events_dir))
  writer.write_scalars(step or 0, scalar_summaries(results))
  write_comparison_images(writer, step or 0, results)
  writer.close()


def write_comparison_images(writer, step: int, results: dict[str, SetResult]) -> None:
  writer.write_images(step, {f"compare/{set_name}/{image_name}": picture[None]
                             for set_name, r in results.items()
                             for image_name, picture in r.comparisons.items()})
