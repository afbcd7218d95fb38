"""`python -m esrgan_jax.metrics`: the metrics of a folder of results, image by image and on average.

SR files are matched to HR files by name without extension; BasicSR's `name_SUFFIX.png` (e.g.
`baboon_ESRGAN.png`) matches `name.png` when `--suffix SUFFIX` is given or when only the name
before the last '_' has an HR file. No-reference metrics (NIQE) need only --sr. A grayscale
file is scored as RGB with three equal channels, but a grayscale SR against a colour HR (or the
reverse) is refused, naming both files: its scores would measure the missing colour, not the
SR (BasicSR's calculate_psnr_ssim.py refuses it too, the shapes differ); convert one first.

A metric is a `Metric` in METRICS: its name, its direction, whether it needs the HR image, and a
`build(args)` that loads what it needs once and returns `score(sr, hr) -> float` on RGB uint8
images. A set-level metric (`fid`: FID, KID and IS, which are statistics of the whole set, not of
one image) is a `SetMetric`: `build(args)` returns an accumulator with `add(sr, hr)` and
`result() -> {name: value}`; its rows are printed below the per-image table and carried in the
JSON's "set" entry. Adding one is a new entry and, if it needs a file, a flag in `_parser`; `python
-m esrgan_jax.compare` takes the same entries and flags (`add_metric_flags`, `score_pair`).
"""

import json
import os
import sys
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from esrgan_jax import cli
from esrgan_jax.metrics import naturalness, psnr_ssim
from esrgan_jax.runtime import backends


class Metric(NamedTuple):
  name: str
  higher_is_better: bool
  needs_hr: bool
  build: Callable  # args -> score(sr, hr) -> float

  @property
  def header(self) -> str:
    return _header(self.name, self.higher_is_better)


class SetMetric(NamedTuple):
  name: str
  rows: tuple[tuple[str, bool], ...]  # (row name, higher is better); a `name_std` may follow each
  build: Callable  # args -> accumulator with add(sr, hr) and result() -> {row: value}
  needs_hr: bool = True


def _header(name: str, higher_is_better: bool) -> str:
  return f"{name} {'↑' if higher_is_better else '↓'}"


def _build_niqe(args):
  if not args.niqe_params:
    raise cli.UserError("--metrics niqe needs --niqe_params FILE (BasicSR's niqe_pris_params.npz "
                        "or MATLAB's modelparameters.mat)")
  try:
    params = naturalness.load_niqe_params(args.niqe_params)
  except ValueError as e:
    raise cli.UserError(f"--niqe_params {e}") from None
  return lambda sr, hr: naturalness.niqe(sr, params, crop_border=args.crop_border)


def _build_lpips(args):
  if not args.lpips_weights:
    raise cli.UserError("--metrics lpips needs --lpips_weights DIR (convert them with python -m esrgan_jax.convert --lpips)")
  from esrgan_jax.metrics import lpips  # Flax and Orbax are only imported when LPIPS is asked for.
  try:
    metric = lpips.LpipsMetric.from_dir(args.lpips_weights)
  except Exception as e:  # CheckpointError and the errors of a missing directory.
    raise cli.UserError(f"--lpips_weights {args.lpips_weights}: {e}") from None
  return metric


def _build_dists(args):
  if not args.dists_weights:
    raise cli.UserError("--metrics dists needs --dists_weights DIR (convert them with "
                        "python -m esrgan_jax.convert --dists)")
  from esrgan_jax.metrics import dists  # Flax and Orbax are only imported when DISTS is asked for.
  try:
    return dists.DistsMetric.from_dir(args.dists_weights)
  except Exception as e:  # CheckpointError and the errors of a missing directory.
    raise cli.UserError(f"--dists_weights {args.dists_weights}: {e}") from None


def _build_fid(args):
  if not args.inception_weights:
    raise cli.UserError("--metrics fid needs --inception_weights DIR (convert pytorch-fid's "
                        "pt_inception-2015-12-05 .pth with "
                        "python -m esrgan_jax.convert --inception)")
  from esrgan_jax.metrics import fid  # Flax and Orbax are only imported when FID is asked for.
  from esrgan_jax.weights.store import CheckpointError
  if min(args.fid_crop_size, args.fid_grid, args.is_splits) < 1:
    raise cli.UserError(f"--fid_crop_size, --fid_grid and --is_splits must be >= 1, got "
                        f"{args.fid_crop_size}, {args.fid_grid} and {args.is_splits}")
  try:
    return fid.FidMetric.from_dir(args.inception_weights, crop_size=args.fid_crop_size,
                                  grid=args.fid_grid, is_splits=args.is_splits)
  except CheckpointError as e:
    raise cli.UserError(f"--inception_weights {e}") from None


METRICS = {m.name: m for m in (
    Metric("psnr", True, True, lambda args: lambda sr, hr: psnr_ssim.psnr(
        sr, hr, args.crop_border, args.test_y_channel)),
    Metric("ssim", True, True, lambda args: lambda sr, hr: psnr_ssim.ssim(
        sr, hr, args.crop_border, args.test_y_channel)),
    Metric("lpips", False, True, _build_lpips),
    Metric("dists", False, True, _build_dists),
    Metric("niqe", False, False, _build_niqe),
    SetMetric("fid", (("fid", False), ("kid", False), ("is", True)), _build_fid),
)}


def _headers(metric) -> list[str]:
  if isinstance(metric, SetMetric):
    return [_header(*row) for row in metric.rows]
  return [metric.header]


def _parser():
  parser = cli.argument_parser(
      "esrgan_jax.metrics", __doc__.split("\n\n")[0] + "\n\n" + "Metrics: " + ", ".join(
          h for m in METRICS.values() for h in _headers(m))
      + " (↑ higher is better, ↓ lower is better); fid gives FID, KID and IS of the whole set "
      "(IS of the SR images alone), on --fid_grid x --fid_grid fixed crops of --fid_crop_size "
      "pixels per image.")
  parser.add_argument(*cli.flag("sr"), required=True, help="folder of SR (result) images")
  parser.add_argument(*cli.flag("hr"), help="folder of HR (ground-truth) images")
  parser.add_argument(*cli.flag("metrics"), default="psnr,ssim",
                      help="comma-separated, from: " + ", ".join(METRICS) + " (default psnr,ssim)")
  parser.add_argument(*cli.flag("crop_border"), type=int, default=0,
                      help="pixels dropped at every border (usually the scale)")
  parser.add_argument(*cli.flag("test_y_channel"), action="store_true",
                      help="PSNR/SSIM on the BT.601 Y channel instead of RGB")
  parser.add_argument(*cli.flag("suffix"), default=None,
                      help="SR names end in _SUFFIX before the extension (BasicSR's naming)")
  parser.add_argument(*cli.flag("niqe_params"), help=".npz or .mat NIQE pristine model")
  parser.add_argument(*cli.flag("lpips_weights"), help="LPIPS weights directory")
  parser.add_argument(*cli.flag("dists_weights"),
                      help="DISTS weights directory written by convert --dists")
  parser.add_argument(*cli.flag("inception_weights"),
                      help="FID Inception directory written by convert --inception (or the .pth)")
  parser.add_argument(*cli.flag("fid_crop_size"), type=int, default=128,
                      help="side of the FID crops, each resized to 299 as pytorch-fid does")
  parser.add_argument(*cli.flag("fid_grid"), type=int, default=3,
                      help="FID crops per image: a fixed grid of N x N (default 3: 9 crops)")
  parser.add_argument(*cli.flag("is_splits"), type=int, default=1,
                      help="IS splits (default 1, as evaluation: a few hundred crops in the usual "
                      "10 splits would cap IS near their size)")
  parser.add_argument(*cli.flag("json"), help="also write the results to this JSON file")
  return parser


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _list(folder: str, flag: str):
  from esrgan_jax.data import images
  try:
    return images.list_images(folder)
  except (OSError, ValueError) as e:
    raise cli.UserError(f"--{flag} {e}") from None


def match_pairs(sr_paths: Sequence[str], hr_paths: Optional[Sequence[str]],
                suffix: Optional[str]):
  """[(name, sr_path, hr_path or None)]; UserError naming an SR file without an HR file."""
  if hr_paths is None:
    return [(_stem(p), p, None) for p in sr_paths]
  by_name = {}
  for path in hr_paths:
    by_name.setdefault(_stem(path), path)
  pairs = []
  for path in sr_paths:
    stem = _stem(path)
    candidates = [stem]
    if suffix and stem.endswith(f"_{suffix}"):
      candidates.insert(0, stem[:-len(suffix) - 1])
    elif "_" in stem:
      candidates.append(stem.rsplit("_", 1)[0])
    name = next((c for c in candidates if c in by_name), None)
    if name is None:
      raise cli.UserError(f"{path}: no HR image named {' or '.join(repr(c) for c in candidates)} "
                          f"(any extension) in --hr {os.path.dirname(hr_paths[0])}")
    pairs.append((name, path, by_name[name]))
  return pairs


def _table(rows, metrics) -> str:
  if not metrics:
    return ""
  width = max([len("image"), len("mean")] + [len(r["name"]) for r in rows])
  lines = ["  ".join([f"{'image':<{width}}"] + [f"{m.header:>10}" for m in metrics])]
  for row in rows + [dict(name="mean", **{m.name: float(np.mean([r[m.name] for r in rows]))
                                          for m in metrics})]:
    lines.append("  ".join([f"{row['name']:<{width}}"] + [f"{row[m.name]:>10.4f}"
                                                          for m in metrics]))
  return "\n".join(lines)


def _set_table(values: dict[str, float], set_metrics, count: int) -> str:
  lines = [f"set of {count} images:"]
  for metric in set_metrics:
    for row, higher in metric.rows:
      spread = f" ± {values[row + '_std']:.4f}" if row + "_std" in values else ""
      lines.append(f"  {_header(row, higher):<8}{values[row]:>12.4f}{spread}")
  return "\n".join(lines)


def _check_json_destination(path: str) -> None:
  """Before the scores (FID can take long): a --json that could not be written loses them."""
  folder = os.path.dirname(path) or "."
  if os.path.isdir(path):
    raise cli.UserError(f"--json {path}: cannot write (Is a directory)")
  if not os.path.isdir(folder):
    raise cli.UserError(f"--json {path}: cannot write ({folder} is not a folder)")
  if not os.access(folder, os.W_OK):
    raise cli.UserError(f"--json {path}: cannot write (Permission denied)")


def _check_same_colour(sr_path: str, hr_path: Optional[str]) -> None:
  from esrgan_jax.data import images
  if hr_path is None:
    return
  gray = [images.read_header(p).channels == 1 for p in (sr_path, hr_path)]
  if gray[0] != gray[1]:
    kinds = ["grayscale" if g else "colour" for g in gray]
    raise cli.UserError(f"{sr_path} is {kinds[0]} but {hr_path} is {kinds[1]}; scores would "
                        "measure the colour, not the SR: convert one to match")


def chosen_metrics(text: str) -> list:
  """The METRICS entries a comma-separated `--metrics` value names; UserError for others."""
  names = [n.strip() for n in text.split(",") if n.strip()]
  unknown = [n for n in names if n not in METRICS]
  if unknown or not names:
    raise cli.UserError(f"--metrics: unknown metric {', '.join(map(repr, unknown)) or '(none)'}; "
                        f"choose from {', '.join(METRICS)}")
  return [METRICS[n] for n in names]


# The metrics command's own flags; every other flag of `_parser` is read by a metric's build.
_COMMAND_FLAGS = ("help", "sr", "hr", "metrics", "suffix", "json")


def add_metric_flags(parser, leave_out: Sequence[str] = ()) -> None:
  """Gives another command's parser the flags the metrics' `build(args)` read (--niqe_params,
  --lpips_weights, FID's settings, ...), so a metric registered here arrives there with its
  flag. `leave_out`: dests that command sets itself (e.g. crop_border)."""
  for action in _parser()._actions:  # pylint: disable=protected-access
    if action.dest not in _COMMAND_FLAGS + tuple(leave_out):
      parser._add_action(action)  # pylint: disable=protected-access


def score_pair(sr, hr, where: str, metrics, scores, set_metrics, accumulators,
               crop_border: int) -> dict[str, float]:
  """{name: value} of one SR/HR pair for each per-image metric (`scores`: their builds); the
  set metrics' `accumulators` are given the pair without its `crop_border` border."""
  row = {}
  for metric, score in zip(metrics, scores):
    try:
      row[metric.name] = float(score(sr, hr))
    except ValueError as e:
      raise cli.UserError(f"{where}: {metric.name}: {e}") from None
  inner = (slice(crop_border, -crop_border),) * 2 if crop_border else (slice(None),) * 2
  for metric, accumulator in zip(set_metrics, accumulators):
    try:
      accumulator.add(sr[inner], hr[inner])
    except ValueError as e:
      raise cli.UserError(f"{where}: {metric.name}: {e}") from None
  return row


def set_results(set_metrics, accumulators, where: str) -> dict[str, float]:
  """The set metrics' values ({fid, kid, kid_std, is, is_std}) once every pair was added."""
  values = {}
  for metric, accumulator in zip(set_metrics, accumulators):
    try:
      values.update(accumulator.result())
    except ValueError as e:
      raise cli.UserError(f"{where}: {metric.name}: {e}") from None
  return values


def run(args) -> int:
  from esrgan_jax.data import images
  chosen = chosen_metrics(args.metrics)
  if args.crop_border < 0:
    raise cli.UserError(f"--crop_border must be >= 0, got {args.crop_border}")
  if args.json:
    _check_json_destination(args.json)
  metrics = [m for m in chosen if isinstance(m, Metric)]
  set_metrics = [m for m in chosen if isinstance(m, SetMetric)]
  needs_hr = [m.name for m in chosen if m.needs_hr]
  if needs_hr and not args.hr:
    raise cli.UserError(f"--metrics {','.join(needs_hr)} needs --hr HR_DIR")
  sr_paths = _list(args.sr, "sr")
  hr_paths = _list(args.hr, "hr") if needs_hr else None
  pairs = match_pairs(sr_paths, hr_paths, args.suffix)
  scores = [m.build(args) for m in metrics]
  accumulators = [m.build(args) for m in set_metrics]

  rows = []
  for name, sr_path, hr_path in pairs:
    sr = images.read_image(sr_path)  # an ImageReadError is a one-line cli.UserError
    hr = images.read_image(hr_path) if hr_path else None
    _check_same_colour(sr_path, hr_path)
    if hr is not None and sr.shape != hr.shape:
      raise cli.UserError(f"{sr_path} is {sr.shape[1]}x{sr.shape[0]} but {hr_path} is "
                          f"{hr.shape[1]}x{hr.shape[0]} (width x height)")
    rows.append({"name": name, "sr": sr_path, "hr": hr_path,
                 **score_pair(sr, hr, sr_path, metrics, scores, set_metrics, accumulators,
                              args.crop_border)})

  set_values = set_results(set_metrics, accumulators, f"--sr {args.sr}")
  print("\n\n".join(t for t in (_table(rows, metrics),
                                 _set_table(set_values, set_metrics, len(rows)) if set_metrics
                                 else "") if t))
  if args.json:
    result = {
        "metrics": {**{m.name: {"higher_is_better": m.higher_is_better} for m in metrics},
                    **{row: {"higher_is_better": higher, "set_level": True}
                       for m in set_metrics for row, higher in m.rows}},
        "settings": {"crop_border": args.crop_border, "test_y_channel": args.test_y_channel,
                     "niqe_params": args.niqe_params, "lpips_weights": args.lpips_weights,
                     "dists_weights": args.dists_weights,
                     "inception_weights": args.inception_weights,
                     "fid_crop_size": args.fid_crop_size, "fid_grid": args.fid_grid,
                     "is_splits": args.is_splits},
        "images": rows,
        "mean": {m.name: float(np.mean([r[m.name] for r in rows])) for m in metrics},
        "set": set_values,
    }
    try:
      with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    except OSError as e:
      raise cli.UserError(f"--json {args.json}: cannot write ({e.strerror or e})") from None
    print(f"wrote {args.json}")
  return cli.EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  backends.start_quietly()
  return cli.run(lambda: run(args))


if __name__ == "__main__":
  sys.exit(main())
