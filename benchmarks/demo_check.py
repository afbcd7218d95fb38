"""Runs a README demo (both stages on the bundled photos) and says whether it works.

    python -m benchmarks.demo_check --workdir=workdir/demo_check
    python -m benchmarks.demo_check --workdir=workdir/demo_check_span --arch=span
    python -m benchmarks.demo_check --workdir=workdir/demo_check_rw --recipe=realworld \
        --generator_init=workdir/demo_psnr

`--recipe=esrgan` (default) runs configs/esrgan_psnr.py:demo then configs/esrgan.py:demo on
bicubic LR; `--recipe=realworld` runs configs/realesrnet_x4plus.py:demo then
configs/realesrgan_x4plus.py:demo on Real-ESRGAN-degraded LR, stage 1 started from
`--generator_init` (the ESRGAN demo's stage 1, as the README runs it; without it, that stage runs
first in WORKDIR/esrgan_psnr). Prints the load average and seconds of each stage, then per
held-out photo: PSNR-Y of bicubic (of the same LR the model sees), of stage 1 and of stage 2 (EMA
generators), and each stage's per-channel mean colour error against the HR image (levels of 255).
Exits 1 when a colour error exceeds --max_colour_error or, on the esrgan recipe, stage 1 does not
beat bicubic on every photo, so it can gate a change to the demo configs. `--psnr_override` /
`--gan_override` pass flags to one stage (the test suite shortens stage 2 with them);
`--no_train` measures what an earlier run left in WORKDIR.
"""

import argparse
import functools
import os
import subprocess
import sys
import time

import numpy as np

from configs import realesrnet_x4plus
from esrgan_jax import metrics
from esrgan_jax.data import bicubic, datasets, eval_sets, images
from esrgan_jax.inference.apply import apply_generator
from esrgan_jax.runtime import backends
from esrgan_jax.weights import generator as generator_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPES = {
    "esrgan": (("psnr", "configs/esrgan_psnr.py:demo"), ("gan", "configs/esrgan.py:demo")),
    "realworld": (("psnr", "configs/realesrnet_x4plus.py:demo"),
                  ("gan", "configs/realesrgan_x4plus.py:demo")),
}
STAGES = RECIPES["esrgan"]
SCALE = 4


def run_stage(config: str, workdir: str, extra: list[str]) -> float:
  command = [sys.executable, "-m", "esrgan_jax.main", f"--config={config}", f"--workdir={workdir}",
             *extra]
  start = time.perf_counter()
  subprocess.run(command, cwd=ROOT, check=True)
  return time.perf_counter() - start


def super_resolve(workdir: str, lr: np.ndarray) -> np.ndarray:
  params, arch = generator_weights.load_generator(workdir)
  model = generator_weights.generator_from_arch(arch)
  sr = np.asarray(apply_generator(model, params, lr[None].astype(np.float32) / 255.0))
  return images.to_pixels(sr[0])


@functools.cache  # the degraded LR compiles a program per photo: once a process
def held_out_images(recipe: str) -> list[datasets.EvalImage]:
  """The photos training evaluates on, with the LR that recipe's evaluation makes."""
  if recipe == "realworld":
    config = realesrnet_x4plus.get_config("demo")
    return eval_sets.create_eval_sets(config.data, scale=SCALE,
                                      degradation=config.degradation)["bundled"]
  return datasets.load_eval_images(
      datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS), None, SCALE)


def colour_error(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
  """Per-channel mean of SR minus that of HR, in levels of 255."""
  return sr.reshape(-1, 3).mean(0) - hr.reshape(-1, 3).mean(0)


def load_average() -> str:
  return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--recipe", default="esrgan", choices=sorted(RECIPES))
  parser.add_argument("--arch", default="rrdbnet", choices=generator_weights.ARCHITECTURES,
                      help="the generator of both stages (config.model.arch)")
  parser.add_argument("--generator_init", default="",
                      help="realworld: the ESRGAN stage-1 workdir stage 1 starts from")
  parser.add_argument("--max_colour_error", type=float, default=3.0,
                      help="largest per-channel mean difference to HR allowed for either stage")
  parser.add_argument("--no_train", action="store_true",
                      help="measure the stages already trained in WORKDIR/psnr and WORKDIR/gan")
  parser.add_argument("--psnr_override", action="append", default=[],
                      help="a flag for stage 1, e.g. --psnr_override=--config.seed=1 (repeatable)")
  parser.add_argument("--gan_override", action="append", default=[],
                      help="a flag for stage 2 (repeatable)")
  args = parser.parse_args(argv)
  stages = RECIPES[args.recipe]
  psnr_dir, gan_dir = (os.path.join(args.workdir, stage) for stage, _ in stages)
  arch = [f"--config.model.arch={args.arch}"]
  first = [*arch, *args.psnr_override]
  if args.no_train:
    return report(args, psnr_dir, gan_dir)
  if args.recipe == "realworld":
    init = args.generator_init
    if not init:
      init = os.path.join(args.workdir, "esrgan_psnr")
      print(f"{load_average()}; ESRGAN stage 1 {run_stage(STAGES[0][1], init, arch):.0f} s")
    first = [*arch, f"--config.generator_init={init}", *args.psnr_override]
  print(f"{load_average()} before stage 1")
  seconds = {"psnr": run_stage(stages[0][1], psnr_dir, first),
             "gan": run_stage(stages[1][1], gan_dir,
                              [*arch, f"--config.generator_init={psnr_dir}", *args.gan_override])}
  print(f"stage 1 {seconds['psnr']:.0f} s, stage 2 {seconds['gan']:.0f} s ({load_average()})")
  return report(args, psnr_dir, gan_dir)


def report(args, psnr_dir: str, gan_dir: str) -> int:
  """Prints the table of both stages' pictures; 0 when the demo passes, else 1."""
  backends.start_quietly()  # here, after the stages: their trainers need the device first
  ok = True
  print(f"{'photo':10s} {'bicubic':>8s} {'stage1':>8s} {'stage2':>8s}  "
        "colour error (R, G, B): stage 1, stage 2")
  for image in held_out_images(args.recipe):
    bic = bicubic.imresize(image.lr, output_shape=image.hr.shape[:2])  # evaluation's baseline
    sr = {"bicubic": bic, "psnr": super_resolve(psnr_dir, image.lr),
          "gan": super_resolve(gan_dir, image.lr)}
    psnr = {name: metrics.psnr(x, image.hr, crop_border=SCALE, test_y_channel=True)
            for name, x in sr.items()}
    colour = [colour_error(sr[stage], image.hr) for stage in ("psnr", "gan")]
    print(f"{image.name:10s} {psnr['bicubic']:8.2f} {psnr['psnr']:8.2f} {psnr['gan']:8.2f}  "
          + ", ".join(np.array2string(c, precision=1) for c in colour))
    ok &= max(float(np.abs(c).max()) for c in colour) <= args.max_colour_error
    if args.recipe == "esrgan":
      ok &= psnr["psnr"] > psnr["bicubic"]
  print("demo check:", "passed" if ok else "FAILED")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
