"""Runs the README's demo (both stages on the bundled photos) and says whether it shows ESRGAN working.

    python -m benchmarks.demo_check --workdir=workdir/demo_check
    python -m benchmarks.demo_check --workdir=workdir/demo_check_span --arch=span

Prints, per held-out photo: PSNR-Y of bicubic, of stage 1 and of stage 2 (EMA generators), and
stage 2's per-channel mean colour error against the HR image (levels of 255). Exits 1 when stage 1
does not beat bicubic on every photo or stage 2's colour error exceeds --max_colour_error, so it
can gate a change to the demo configs. `--psnr_override` / `--gan_override` pass flags to one
stage (the test suite shortens stage 2 with them).
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from esrgan_jax import metrics
from esrgan_jax.data import bicubic, datasets, images
from esrgan_jax.inference.apply import apply_generator
from esrgan_jax.weights import generator as generator_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAGES = (("psnr", "configs/esrgan_psnr.py:demo"), ("gan", "configs/esrgan.py:demo"))


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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--arch", default="rrdbnet", choices=generator_weights.ARCHITECTURES,
                      help="the generator of both stages (config.model.arch)")
  parser.add_argument("--max_colour_error", type=float, default=6.0,
                      help="largest per-channel mean difference to HR allowed for stage 2")
  parser.add_argument("--psnr_override", action="append", default=[],
                      help="a flag for stage 1, e.g. --psnr_override=--config.seed=1 (repeatable)")
  parser.add_argument("--gan_override", action="append", default=[],
                      help="a flag for stage 2 (repeatable)")
  args = parser.parse_args(argv)
  psnr_dir, gan_dir = (os.path.join(args.workdir, stage) for stage, _ in STAGES)
  arch = [f"--config.model.arch={args.arch}"]
  seconds = {"psnr": run_stage(STAGES[0][1], psnr_dir, [*arch, *args.psnr_override]),
             "gan": run_stage(STAGES[1][1], gan_dir,
                              [*arch, f"--config.generator_init={psnr_dir}", *args.gan_override])}
  ok = True
  scale = 4
  eval_images = datasets.load_eval_images(
      datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS), None, scale)
  print(f"stage 1 {seconds['psnr']:.0f} s, stage 2 {seconds['gan']:.0f} s")
  print(f"{'photo':10s} {'bicubic':>8s} {'stage1':>8s} {'stage2':>8s}  stage-2 colour error (R, G, B)")
  for image in eval_images:
    bic = bicubic.imresize(image.lr, output_shape=image.hr.shape[:2])  # evaluation's baseline
    gan = super_resolve(gan_dir, image.lr)
    psnr = {name: metrics.psnr(sr, image.hr, crop_border=scale, test_y_channel=True)
            for name, sr in (("bicubic", bic), ("psnr", super_resolve(psnr_dir, image.lr)),
                             ("gan", gan))}
    colour = gan.reshape(-1, 3).mean(0) - image.hr.reshape(-1, 3).mean(0)
    print(f"{image.name:10s} {psnr['bicubic']:8.2f} {psnr['psnr']:8.2f} {psnr['gan']:8.2f}  "
          f"{np.array2string(colour, precision=1)}")
    ok &= psnr["psnr"] > psnr["bicubic"] and float(np.abs(colour).max()) <= args.max_colour_error
  print("demo check:", "passed" if ok else "FAILED")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
