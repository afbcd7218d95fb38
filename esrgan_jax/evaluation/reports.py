"""What an evaluation reports: the console table, TensorBoard scalars and images, and the
eval_results.json and comparison pictures of a run's (or eval mode's) evaluation directory."""

import json
import os
from typing import NamedTuple, Optional

import numpy as np
from clu import metric_writers
from etils import epath

from esrgan_jax.data import images

# Which way is better, for the table headers.
METRIC_DIRECTIONS = {"psnr_y": "\u2191", "ssim_y": "\u2191", "psnr_rgb": "\u2191",
                     "niqe": "\u2193", "fid": "\u2193", "kid": "\u2193", "is": "\u2191"}
LOWER_IS_BETTER_PREFIXES = ("lpips", "dists")


class SetResult(NamedTuple):
  """One evaluation set's results, the model's beside the bicubic baseline's."""
  means: dict[str, float]  # metric name -> mean over the set's images
  per_image: dict[str, dict[str, float]]  # image name -> metric name -> value
  comparisons: dict[str, np.ndarray]  # image name -> labelled LR | bicubic | SR | HR picture
  bicubic_means: dict[str, float]  # the same metrics of bicubic upscaling
  bicubic_per_image: dict[str, dict[str, float]]
  # Set-level metrics (fid, kid, kid_std, is, is_std) of the model and of bicubic; empty without
  # config.eval.inception_weights.
  set_metrics: dict[str, float] = {}
  bicubic_set_metrics: dict[str, float] = {}


def scalar_summaries(results: dict[str, SetResult]) -> dict[str, float]:
  """eval/{set}/{metric} of the model and eval/{set}/bicubic_{metric} of the baseline.

  The baseline is written at every evaluation (from the cache), so TensorBoard draws it as a
  flat reference line beside the model's curve.
  """
  scalars = {}
  for set_name, result in results.items():
    scalars.update({f"eval/{set_name}/{m}": v for m, v in result.means.items()})
    scalars.update({f"eval/{set_name}/bicubic_{m}": v for m, v in result.bicubic_means.items()})
    scalars.update({f"eval/{set_name}/{m}": v for m, v in result.set_metrics.items()})
    scalars.update({f"eval/{set_name}/bicubic_{m}": v
                    for m, v in result.bicubic_set_metrics.items()})
  return scalars


def headline_psnr(results: dict[str, SetResult]) -> float:
  """The value that ranks checkpoints: Y-channel PSNR on the first evaluation set."""
  return next(iter(results.values())).means["psnr_y"]


def direction(metric: str) -> str:
  if metric in METRIC_DIRECTIONS:
    return METRIC_DIRECTIONS[metric]
  return "\u2193" if metric.startswith(LOWER_IS_BETTER_PREFIXES) else ""


def format_table(results: dict[str, SetResult]) -> str:
  """One row per (set, method): the model and its bicubic baseline; arrows say which way wins.

  Per-image means come first, then the set-level FID, KID and IS (their spreads are in the JSON).
  """
  first = next(iter(results.values()))
  names = list(first.means) + [m for m in first.set_metrics if not m.endswith("_std")]
  headers = [f"{m} {direction(m)}".rstrip() for m in names]
  width = max(12, *(len(h) + 2 for h in headers))
  rows = [f"{'set':<16}{'images':>8}  {'method':<9}" + "".join(f"{h:>{width}}" for h in headers)]
  for name, result in results.items():
    for method, means in (("model", {**result.means, **result.set_metrics}),
                          ("bicubic", {**result.bicubic_means, **result.bicubic_set_metrics})):
      rows.append(f"{name:<16}{len(result.per_image):>8}  {method:<9}"
                  + "".join(f"{means[m]:>{width}.4f}" for m in names))
  return "\n".join(rows)


def results_dir(workdir: str) -> epath.Path:
  """WORKDIR/eval: the training run's eval_results.json and comparison pictures."""
  return epath.Path(workdir) / "eval"


def write_results(results: dict[str, SetResult], workdir: str, source: str, step: int,
                  lr_sources: dict[str, str]) -> None:
  """The training run's eval_results.json and comparison PNGs under `results_dir`. No
  TensorBoard events: the trainer's writer has put the same tags into WORKDIR's run, and a
  second run under eval/ would show every tag twice. The caller shows the table (it is not
  printed here). `lr_sources`: eval_lr_sources, written as each set's "lr"."""
  write(results, results_dir(workdir), None, source, step, lr_sources)


def write(results: dict[str, SetResult], out_dir: epath.Path, events_dir: Optional[epath.Path],
          source: str, step: Optional[int], lr_sources: dict[str, str]) -> None:
  """eval_results.json and the pictures into `out_dir`, and TensorBoard scalars and images into
  `events_dir` unless it is None."""
  out_dir.mkdir(parents=True, exist_ok=True)
  summary = {"checkpoint": source, "step": step,
             "directions": {m: direction(m) for r in results.values()
                            for m in [*r.means, *r.set_metrics] if direction(m)},
             "sets": {name: {"lr": lr_sources[name], "mean": r.means, "images": r.per_image, "set": r.set_metrics,
                             "bicubic": {"mean": r.bicubic_means, "images": r.bicubic_per_image,
                                         "set": r.bicubic_set_metrics}}
                      for name, r in results.items()}}
  (out_dir / "eval_results.json").write_text(json.dumps(summary, indent=2))
  for set_name, result in results.items():
    for image_name, picture in result.comparisons.items():
      images.write_image(os.fspath(out_dir / f"{set_name}_{image_name}_comparison.png"), picture)
  if events_dir is None:
    return
  # An exported generator has no training step; its one point is drawn at 0.
  writer = metric_writers.create_default_writer(os.fspath(events_dir))
  writer.write_scalars(step or 0, scalar_summaries(results))
  write_comparison_images(writer, step or 0, results)
  writer.close()


def write_comparison_images(writer, step: int, results: dict[str, SetResult]) -> None:
  writer.write_images(step, {f"compare/{set_name}/{image_name}": picture[None]
                             for set_name, r in results.items()
                             for image_name, picture in r.comparisons.items()})
