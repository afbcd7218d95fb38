"""`python -m esrgan_jax.metrics`: the metrics of a folder of results, image by image and on average.

SR files are matched to HR files by name without extension; BasicSR's `name_SUFFIX.png` (e.g.
`baboon_ESRGAN.png`) matches `name.png` when `--suffix SUFFIX` is given or when only the name
before the last '_' has an HR file. No-reference metrics (NIQE) need only --sr.

A metric is a `Metric` in METRICS: its name, its direction, whether it needs the HR image, and a
`build(args)` that loads what it needs once and returns `score(sr, hr) -> float` on RGB uint8
images. Adding one (FID, ...) is a new entry and, if it needs a file, a flag in `_parser`.
"""

import json
import os
import sys
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from esrgan_jax import cli
from esrgan_jax.metrics import naturalness, psnr_ssim


class Metric(NamedTuple):
  name: str
  higher_is_better: bool
  needs_hr: bool
  build: Callable  # args -> score(sr, hr) -> float

  @property
  def header(self) -> str:
    return f"{self.name} {'↑' if self.higher_is_better else '↓'}"


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


METRICS = {m.name: m for m in (
    Metric("psnr", True, True, lambda args: lambda sr, hr: psnr_ssim.psnr(
        sr, hr, args.crop_border, args.test_y_channel)),
    Metric("ssim", True, True, lambda args: lambda sr, hr: psnr_ssim.ssim(
        sr, hr, args.crop_border, args.test_y_channel)),
    Metric("lpips", False, True, _build_lpips),
    Metric("niqe", False, False, _build_niqe),
)}


def _parser():
  parser = cli.argument_parser(
      "esrgan_jax.metrics", __doc__.split("\n\n")[0] + "\n\n" + "Metrics: " + ", ".join(
          m.header for m in METRICS.values()) + " (↑ higher is better, ↓ lower is better).")
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
  width = max([len("image"), len("mean")] + [len(r["name"]) for r in rows])
  lines = ["  ".join([f"{'image':<{width}}"] + [f"{m.header:>10}" for m in metrics])]
  for row in rows + [dict(name="mean", **{m.name: float(np.mean([r[m.name] for r in rows]))
                                          for m in metrics})]:
    lines.append("  ".join([f"{row['name']:<{width}}"] + [f"{row[m.name]:>10.4f}"
                                                          for m in metrics]))
  return "\n".join(lines)


def run(args) -> int:
  from esrgan_jax.data import images
  names = [n.strip() for n in args.metrics.split(",") if n.strip()]
  unknown = [n for n in names if n not in METRICS]
  if unknown or not names:
    raise cli.UserError(f"--metrics: unknown metric {', '.join(map(repr, unknown)) or '(none)'}; "
                        f"choose from {', '.join(METRICS)}")
  if args.crop_border < 0:
    raise cli.UserError(f"--crop_border must be >= 0, got {args.crop_border}")
  metrics = [METRICS[n] for n in names]
  needs_hr = [m.name for m in metrics if m.needs_hr]
  if needs_hr and not args.hr:
    raise cli.UserError(f"--metrics {','.join(needs_hr)} needs --hr HR_DIR")
  sr_paths = _list(args.sr, "sr")
  hr_paths = _list(args.hr, "hr") if needs_hr else None
  pairs = match_pairs(sr_paths, hr_paths, args.suffix)
  scores = [m.build(args) for m in metrics]

  rows = []
  for name, sr_path, hr_path in pairs:
    try:
      sr = images.read_image(sr_path)
      hr = images.read_image(hr_path) if hr_path else None
    except images.ImageReadError as e:
      raise cli.UserError(str(e)) from None
    if hr is not None and sr.shape != hr.shape:
      raise cli.UserError(f"{sr_path} is {sr.shape[1]}x{sr.shape[0]} but {hr_path} is "
                          f"{hr.shape[1]}x{hr.shape[0]} (width x height)")
    row = {"name": name, "sr": sr_path, "hr": hr_path}
    for metric, score in zip(metrics, scores):
      try:
        row[metric.name] = float(score(sr, hr))
      except ValueError as e:
        raise cli.UserError(f"{sr_path}: {metric.name}: {e}") from None
    rows.append(row)

  print(_table(rows, metrics))
  if args.json:
    result = {
        "metrics": {m.name: {"higher_is_better": m.higher_is_better} for m in metrics},
        "settings": {"crop_border": args.crop_border, "test_y_channel": args.test_y_channel,
                     "niqe_params": args.niqe_params, "lpips_weights": args.lpips_weights},
        "images": rows,
        "mean": {m.name: float(np.mean([r[m.name] for r in rows])) for m in metrics},
    }
    try:
      with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    except OSError as e:
      raise cli.UserError(f"--json {args.json}: cannot write ({e.strerror or e})") from None
  return cli.EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  return cli.run(lambda: run(args))


if __name__ == "__main__":
  sys.exit(main())
