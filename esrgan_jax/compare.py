"""Compares super-resolution models on one set of images: metrics, speed, trade-off, crops.

  python -m esrgan_jax.compare MODEL... -o OUT [--hr DIR [--lr DIR] | --config CFG]
      [--metrics psnr,ssim,lpips,niqe,fid] [--interpolate PSNR_MODEL GAN_MODEL
      --alphas 0,0.2,0.4,0.6,0.8,1] [--niqe_params F] [--lpips_weights D] [--save_sr]

A MODEL is a training workdir (its newest readable step; `WORKDIR@STEP` for another), a generator
checkpoint directory, or a .pth / .safetensors file, of any architecture (RRDBNet,
SRVGGNetCompact, SPAN); all must share one scale. Each runs on the same LR images, as evaluation
runs a generator, beside MATLAB bicubic as a row: the HR images of --hr (LR: --lr's files, or
MATLAB bicubic of the mod-cropped HR), the eval sets of --config's config (its LR rule; several
sets are pooled, images named SET/NAME), or by default the bundled held-out photos that training
evaluates on. `--interpolate` adds ESRGAN's network-interpolation sweep between two models of one
architecture, one row per alpha (theta = (1 - alpha) * PSNR_MODEL + alpha * GAN_MODEL).

The metrics are the metrics command's (`python -m esrgan_jax.metrics`, with --crop_border SCALE
--test_y_channel), with its flags (--niqe_params, --lpips_weights, --inception_weights, ...): psnr
and ssim always, on the Y channel without the `scale` border, and whatever --metrics adds, each
as that command measures it (LPIPS on the whole image, where evaluation drops the border first).

OUT gets report.json (every row: name, checkpoint as given, arch, params, the means, per_image,
seconds_per_mp of output, compile time left out), report.md (the table, best of each column in
bold), perception_distortion.png (PSNR-Y against each perceptual metric asked, the Pareto front,
the sweep as a line; PSNR-Y against SSIM-Y when none is asked), crops.png (the crops where the
models disagree most, beside LR, bicubic and HR) and, when a MODEL is a training workdir,
curves.png (its periodic evaluation against step, from its event files). --save_sr also writes
every output to OUT/sr/ROW/IMAGE.png. An OUT that holds a report.json is refused unless
--overwrite, which replaces the files named here and leaves any others.
"""

import functools
import os
import sys
from typing import Optional, Sequence

from esrgan_jax import cli

cli.quiet_tensorflow()  # before the evaluation modules import TensorFlow (clu's writers)
# pylint: disable=g-import-not-at-top,wrong-import-position
from esrgan_jax import interpolate
from esrgan_jax.data import datasets, images
from esrgan_jax.data.eval_sets import create_eval_sets, eval_lr_sources
from esrgan_jax.evaluation import compare_curves, compare_plots, compare_report, reports
from esrgan_jax.evaluation.compare_models import (BICUBIC, Candidate, ModelSpecError,
                                                  common_scale, resolve, run_candidate,
                                                  unique_names)
from esrgan_jax.metrics import cli as metrics_cli
from esrgan_jax.runtime import backends, xla_flags
# pylint: enable=g-import-not-at-top,wrong-import-position

PROG = "esrgan_jax.compare"
PERCEPTION_DISTORTION, CROPS, CURVES = "perception_distortion.png", "crops.png", "curves.png"
DISTORTION_METRICS = ("psnr", "ssim")


def parse_args(argv: Optional[Sequence[str]]):
  parser = cli.argument_parser(PROG, __doc__.split("\n\n", 2)[2])
  parser.add_argument("models", nargs="*", metavar="MODEL",
                      help="training workdir (or WORKDIR@STEP), generator checkpoint directory, "
                      ".pth or .safetensors file")
  parser.add_argument(*cli.flag("output", "-o"), required=True, metavar="OUT",
                      help="folder for the report and figures (created if missing)")
  parser.add_argument(*cli.flag("hr"), metavar="DIR", help="folder of HR images")
  parser.add_argument(*cli.flag("lr"), metavar="DIR",
                      help="folder of their LR images (default: MATLAB bicubic of the HR)")
  parser.add_argument(*cli.flag("config"), metavar="CFG",
                      help="config file (configs/esrgan.py:demo) whose eval sets to use")
  parser.add_argument(*cli.flag("metrics"), default="psnr,ssim",
                      help="comma-separated, from: " + ", ".join(metrics_cli.METRICS)
                      + " (psnr and ssim are always measured)")
  parser.add_argument(*cli.flag("interpolate"), nargs=2, metavar=("PSNR_MODEL", "GAN_MODEL"),
                      help="add the network-interpolation sweep between these two models")
  parser.add_argument(*cli.flag("alphas"), default="0,0.2,0.4,0.6,0.8,1",
                      help="the sweep's GAN weights in [0, 1] (default 0,0.2,0.4,0.6,0.8,1)")
  parser.add_argument(*cli.flag("tile"), type=int, default=0,
                      help="tile size in LR pixels, 0 for whole images (default 0)")
  parser.add_argument(*cli.flag("tile_pad"), type=int, default=16,
                      help="context pixels around each tile (default 16, as evaluation)")
  parser.add_argument(*cli.flag("num_crops"), type=int, default=3,
                      help="crops shown in crops.png (default 3)")
  parser.add_argument(*cli.flag("crop_size"), type=int, default=96,
                      help="side of each crop in HR pixels (default 96)")
  parser.add_argument(*cli.flag("crop_images"), type=int, default=8,
                      help="crops are picked among the first N images, whose outputs are held "
                      "in memory (default 8)")
  parser.add_argument(*cli.flag("save_sr"), action="store_true",
                      help="also write every output to OUT/sr/ROW/IMAGE.png")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the report and figures of an earlier comparison in OUT")
  metrics_cli.add_metric_flags(parser, leave_out=("crop_border", "test_y_channel"))
  args = parser.parse_args(argv)
  if not args.models and not args.interpolate:
    parser.error("no model: give MODEL arguments and/or --interpolate PSNR_MODEL GAN_MODEL")
  return args


def check_values(args) -> list[float]:
  """Flag values argparse cannot check (one-line UserError); returns the sweep's alphas."""
  if args.lr and not args.hr:
    raise cli.UserError(f"--lr {args.lr} needs --hr: the LR images are matched to HR images")
  if args.config and args.hr:
    raise cli.UserError("--hr and --config both name the images; give one")
  for flag in ("tile", "tile_pad", "num_crops", "crop_size", "crop_images"):
    if getattr(args, flag) < 0:
      raise cli.UserError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
  alphas = []
  for text in (args.alphas.split(",") if args.interpolate else []):
    try:
      alpha = float(text)
    except ValueError:
      raise cli.UserError(f"--alphas: {text!r} is not a number") from None
    interpolate.check_alpha(alpha)
    alphas.append(alpha)
  if args.interpolate and not alphas:
    raise cli.UserError("--alphas: no value given")
  return alphas


def check_output(out: str, overwrite: bool) -> None:
  """Refuses, before any work, an OUT that is a file or holds an earlier report."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise cli.UserError(f"-o {out}: is a file, not a folder")
  if os.path.exists(os.path.join(out, compare_report.REPORT_JSON)) and not overwrite:
    raise cli.UserError(f"-o {out}: holds the report of an earlier comparison "
                        f"({compare_report.REPORT_JSON}); choose another folder or pass "
                        "--overwrite")


def sweep(ends: Sequence[str], alphas: Sequence[float]) -> list[Candidate]:
  """One candidate per alpha, blended as `python -m esrgan_jax.interpolate` blends."""
  psnr, gan = resolve(ends[0]), resolve(ends[1])
  difference = (interpolate.arch_difference(psnr.arch, gan.arch)
                or interpolate.params_difference(psnr.params, gan.params))
  if difference:
    raise interpolate.InterpolationError(
        f"--interpolate {ends[0]} {ends[1]}: different architectures: {difference}")
  return [Candidate(f"alpha={alpha:g}", f"{1 - alpha:g} * {ends[0]} + {alpha:g} * {ends[1]}",
                    psnr.arch, interpolate.interpolate_params(psnr.params, gan.params, alpha),
                    alpha=alpha) for alpha in alphas]


def load_images(args, scale: int):
  """(the images as evaluation's EvalImage list, how their LR was made)."""
  if args.hr:
    try:
      hr_paths, lr_paths = datasets.eval_set_paths(args.hr, args.lr, scale)
    except (OSError, ValueError) as error:
      if isinstance(error, cli.UserError):
        raise
      raise cli.UserError(f"--hr {error}") from None
    lr_source = f"files in {args.lr}" if args.lr else "MATLAB bicubic of the mod-cropped HR"
    return datasets.load_eval_images(hr_paths, lr_paths, scale), lr_source
  if args.config:
    from esrgan_jax import config_checks  # pylint: disable=import-outside-toplevel
    from esrgan_jax.plan import load_config  # pylint: disable=import-outside-toplevel
    config = load_config(args.config, [])
    if config.model.scale != scale:
      raise cli.UserError(f"--config {args.config}: config.model.scale is "
                          f"{config.model.scale}, the models are x{scale}")
    config_checks.validate_eval_sets(config.data)  # as training checks them: one line each
    sets = create_eval_sets(config.data, scale=scale, degradation=config.degradation)
    pooled = [item if len(sets) == 1 else datasets.EvalImage(f"{name}/{item.name}", item.lr,
                                                             item.hr)
              for name, items in sets.items() for item in items]
    return pooled, "; ".join(f"{n}: {s}" for n, s in eval_lr_sources(config.data).items())
  paths = datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS)
  return (datasets.load_eval_images(paths, None, scale),
          "MATLAB bicubic of the mod-cropped HR (the bundled held-out photos)")


def scorer(args, chosen):
  """score_set(pairs, label) -> (per_image, set values), with the metrics command's code."""
  metrics = [m for m in chosen if isinstance(m, metrics_cli.Metric)]
  set_metrics = [m for m in chosen if isinstance(m, metrics_cli.SetMetric)]
  scores = [m.build(args) for m in metrics]
  accumulators = [m.build(args) for m in set_metrics]

  def score_set(pairs, label):
    for k, (metric, accumulator) in enumerate(zip(set_metrics, accumulators)):
      if hasattr(accumulator, "reset"):
        accumulator.reset()
      else:
        accumulators[k] = metric.build(args)
    per_image = {name: metrics_cli.score_pair(sr, hr, f"{label}: {name}", metrics, scores,
                                              set_metrics, accumulators, args.crop_border)
                 for name, sr, hr in pairs}
    return per_image, metrics_cli.set_results(set_metrics, accumulators, label)

  return score_set


def directions_of(chosen) -> dict[str, bool]:
  """metric or set row -> higher is better, for the table's arrows and the plots."""
  directions = {}
  for metric in chosen:
    if isinstance(metric, metrics_cli.SetMetric):
      directions.update(dict(metric.rows))
    else:
      directions[metric.name] = metric.higher_is_better
  return directions


def perceptual_panels(chosen) -> list[str]:
  """Each perceptual metric asked (a set metric by its first row, FID); SSIM when none is."""
  panels = [m.rows[0][0] if isinstance(m, metrics_cli.SetMetric) else m.name for m in chosen
            if m.name not in DISTORTION_METRICS]
  return panels or ["ssim"]


def _writer(out: str, label: str):
  folder = os.path.join(out, "sr", label.replace(os.sep, "_").replace(" ", "_"))
  os.makedirs(folder, exist_ok=True)
  return lambda name, sr: images.write_image(
      os.path.join(folder, name.replace("/", "_") + ".png"), sr)


def write_figures(args, results, eval_images, directions, panels, scale) -> list[str]:
  """The PNGs; returns the names written."""
  names = [r.candidate.name for r in results]
  kinds = [BICUBIC if r.candidate.arch is None else "sweep" if r.candidate.alpha is not None
           else "model" for r in results]
  figure = compare_plots.perception_distortion_figure(
      names, [r.means for r in results], kinds, [r.candidate.alpha for r in results], panels,
      directions)
  compare_plots.save(figure, os.path.join(args.output, PERCEPTION_DISTORTION))
  written = [PERCEPTION_DISTORTION]
  kept = [r.kept for r in results]
  models = [k for r, k in zip(results, kept) if r.candidate.arch is not None]
  crops, size = compare_plots.pick_crops(models if len(models) > 1 else kept, args.crop_size,
                                         args.num_crops, scale)
  if crops:
    shown = eval_images[:args.crop_images]
    figure = compare_plots.crops_figure([i.name for i in shown], [i.lr for i in shown],
                                        [i.hr for i in shown], names, kept, crops, size, scale)
    compare_plots.save(figure, os.path.join(args.output, CROPS))
    written.append(CROPS)
  runs = [(r.candidate.name, compare_curves.read_eval_scalars(r.candidate.workdir),
           r.candidate.step) for r in results if r.candidate.workdir]
  if runs:
    figure = compare_curves.curves_figure(runs, directions=_eval_directions(runs))
    compare_plots.save(figure, os.path.join(args.output, CURVES))
    written.append(CURVES)
  return written


def _eval_directions(runs) -> dict[str, str]:
  return {metric: reports.direction(metric)
          for _, metric in compare_curves.metric_panels([tags for _, tags, _ in runs])}


def compare(args) -> str:
  alphas = check_values(args)
  check_output(args.output, args.overwrite)
  chosen = metrics_cli.chosen_metrics(",".join(("psnr", "ssim", args.metrics)))
  chosen = list({m.name: m for m in chosen}.values())
  candidates = [resolve(spec) for spec in args.models]
  if args.interpolate:
    candidates += sweep(args.interpolate, alphas)
  scale = common_scale(candidates)
  unique_names(candidates)
  if any(c.name == BICUBIC for c in candidates):
    raise ModelSpecError("a MODEL is named 'bicubic', the baseline row's name; rename it")
  eval_images, lr_source = load_images(args, scale)
  try:
    os.makedirs(args.output, exist_ok=True)
  except OSError as error:  # a read-only disk, a file on the way: before any model runs
    raise cli.UserError(f"-o {args.output}: cannot create the folder "
                        f"({error.strerror or error})") from None
  args.crop_border, args.test_y_channel = scale, True  # evaluation's rule, for every metric
  score_set = scorer(args, chosen)
  results = []
  for candidate in [Candidate(BICUBIC, BICUBIC, None)] + candidates:
    print(f"{candidate.name}: {len(eval_images)} images", file=sys.stderr)
    write = _writer(args.output, candidate.name) if args.save_sr else None
    results.append(run_candidate(candidate, eval_images, scale, args.tile, args.tile_pad,
                                 functools.partial(score_set, label=candidate.name),
                                 args.crop_images, write))
  directions = directions_of(chosen)
  settings = {"scale": scale, "images": [i.name for i in eval_images], "lr": lr_source,
              "crop_border": scale, "test_y_channel": True, "metrics": [m.name for m in chosen],
              "tile": args.tile, "tile_pad": args.tile_pad}
  compare_report.write(args.output, results, directions, settings)
  written = write_figures(args, results, eval_images, directions, perceptual_panels(chosen),
                          scale)
  files = ", ".join([compare_report.REPORT_JSON, compare_report.REPORT_MD] + written)
  return (f"{compare_report.console_table(results, directions)}\n"
          f"wrote {args.output}: {files}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  xla_flags.apply_defaults()
  args = parse_args(argv)
  backends.start_quietly()
  return cli.run(lambda: compare(args))


if __name__ == "__main__":
  sys.exit(main())
