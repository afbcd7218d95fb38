"""Evaluation: PSNR/SSIM on the Y channel (and RGB PSNR) of every configured set, and eval mode.

Used by the trainer's periodic evaluation and by `main.py` in eval mode, which restores a
checkpoint and writes a table (console, JSON, TensorBoard) plus LR | bicubic | SR | HR pictures.
"""

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from etils import epath
from jax.experimental import multihost_utils

from esrgan_jax import checkpoints, comparison, metrics, tiling
from esrgan_jax.metrics import lpips
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.data import bicubic, images, pipeline
from esrgan_jax.train_state import COMPUTE_DTYPES

METRIC_NAMES = ("psnr_y", "ssim_y", "psnr_rgb")


class SetResult(NamedTuple):
  means: dict[str, float]  # metric name -> mean over the set's images
  per_image: dict[str, dict[str, float]]  # image name -> metric name -> value
  comparisons: dict[str, np.ndarray]  # image name -> LR | bicubic | SR | HR uint8 picture


def make_generate_fn(generator, params) -> Callable[[np.ndarray], np.ndarray]:
  """A jitted NHWC float [0, 1] -> NHWC float apply on this process's first local device.

  Evaluation runs process by process on different images, so it must not use the global mesh.
  """
  device = jax.local_devices()[0]
  params = jax.device_put(_gather_to_host(params), device)
  apply = jax.jit(lambda p, x: generator.apply({"params": p}, x).astype(jnp.float32))
  return lambda batch: np.asarray(apply(params, jax.device_put(batch, device)))


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


def evaluate_set(generate_fn, eval_images, scale: int, tile: int, tile_pad: int,
                 num_comparisons: int, lpips_metric=None) -> SetResult:
  """Each process evaluates images i::process_count; the values are gathered on every process.

  With `lpips_metric` (an `lpips.LpipsMetric`), LPIPS joins the metrics, on the same crop.
  """
  count = len(eval_images)
  names = METRIC_NAMES + ((lpips_metric.name,) if lpips_metric else ())
  values = np.full((count, len(names)), np.nan, np.float64)
  comparisons = {}
  for i in range(jax.process_index(), count, jax.process_count()):
    item = eval_images[i]
    sr = super_resolve(generate_fn, item.lr, scale, tile, tile_pad)
    row = image_metrics(sr, item.hr, scale)
    if lpips_metric:
      crop = (slice(scale, -scale),) * 2 if scale else (slice(None),) * 2
      row[lpips_metric.name] = lpips_metric(sr[crop], item.hr[crop])
    values[i] = [row[m] for m in names]
    if i < num_comparisons:
      upscaled = bicubic.imresize(item.lr, output_shape=item.hr.shape[:2])
      comparisons[item.name] = comparison.comparison_strip(item.lr, upscaled, sr, item.hr)
  if jax.process_count() > 1:
    # NaN marks another process's images; fmax keeps the one real value of each row.
    values = np.fmax.reduce(multihost_utils.process_allgather(values), axis=0)
  per_image = {item.name: dict(zip(names, map(float, row)))
               for item, row in zip(eval_images, values)}
  means = {m: float(np.mean(values[:, j])) for j, m in enumerate(names)}
  return SetResult(means, per_image, comparisons)


def evaluate_sets(generate_fn, eval_sets: dict[str, Any], scale: int,
                  eval_config: ml_collections.ConfigDict) -> dict[str, SetResult]:
  lpips_weights = eval_config.get("lpips_weights")
  lpips_metric = lpips.LpipsMetric.from_dir(lpips_weights) if lpips_weights else None
  return {name: evaluate_set(generate_fn, items, scale, eval_config.tile, eval_config.tile_pad,
                             eval_config.num_comparison_images, lpips_metric)
          for name, items in eval_sets.items()}


def scalar_summaries(results: dict[str, SetResult]) -> dict[str, float]:
  return {f"eval/{set_name}/{metric}": value
          for set_name, result in results.items() for metric, value in result.means.items()}


def headline_psnr(results: dict[str, SetResult]) -> float:
  """The value that ranks checkpoints: Y-channel PSNR on the first evaluation set."""
  return next(iter(results.values())).means["psnr_y"]


def format_table(results: dict[str, SetResult]) -> str:
  names = list(next(iter(results.values())).means)
  header = f"{'set':<16}{'images':>8}" + "".join(f"{m:>12}" for m in names)
  rows = [header]
  for name, result in results.items():
    rows.append(f"{name:<16}{len(result.per_image):>8}"
                + "".join(f"{result.means[m]:>12.4f}" for m in names))
  return "\n".join(rows)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, SetResult]:
  """Eval mode: restore a generator, evaluate every set, write the table and pictures."""
  source = config.eval.checkpoint or workdir
  if not config.eval.checkpoint:
    step = None if config.eval.checkpoint_step < 0 else config.eval.checkpoint_step
    try:
      source = checkpoints.find_step_directory(workdir, step)
    except FileNotFoundError as error:
      raise generator_weights.CheckpointError(str(error)) from error
  params, arch = generator_weights.load_generator(source)
  if arch["scale"] != config.model.scale:
    raise generator_weights.CheckpointError(
        f"{source}: checkpoint is a x{arch['scale']} model but config.model.scale is "
        f"{config.model.scale}")
  generator = generator_weights.generator_from_arch(
      arch, dtype=COMPUTE_DTYPES[config.compute_dtype])
  eval_sets = pipeline.create_eval_sets(config.data, scale=arch["scale"])
  results = evaluate_sets(make_generate_fn(generator, params), eval_sets, arch["scale"],
                          config.eval)
  logging.info("Evaluated %s:\n%s", source, format_table(results))
  if jax.process_index() == 0:
    write_results(results, workdir, source=str(source))
  return results


def write_results(results: dict[str, SetResult], workdir: str, source: str, step: int = 0) -> None:
  """eval_results.json, TensorBoard scalars and images, and comparison PNGs under workdir/eval."""
  out_dir = epath.Path(workdir) / "eval"
  out_dir.mkdir(parents=True, exist_ok=True)
  summary = {"checkpoint": source,
             "sets": {name: {"mean": r.means, "images": r.per_image}
                      for name, r in results.items()}}
  (out_dir / "eval_results.json").write_text(json.dumps(summary, indent=2))
  for set_name, result in results.items():
    for image_name, picture in result.comparisons.items():
      images.write_image(os.fspath(out_dir / f"{set_name}_{image_name}_comparison.png"), picture)
  writer = metric_writers.create_default_writer(os.fspath(out_dir))
  writer.write_scalars(step, scalar_summaries(results))
  write_comparison_images(writer, step, results)
  writer.flush()
  print(format_table(results))


def write_comparison_images(writer, step: int, results: dict[str, SetResult]) -> None:
  writer.write_images(step, {f"compare/{set_name}/{image_name}": picture[None]
                             for set_name, r in results.items()
                             for image_name, picture in r.comparisons.items()})
