"""Time of PSNR, SSIM and NIQE on a Set14-size set: 14 images of about 500x400 from bundled photos.

  python benchmarks/metrics_speed.py

Prints one line per metric: seconds for the whole set, after one warm-up pass (NIQE's block
features compile once per block size, here already while fitting the model). The pristine
model is fitted from other bundled photos, so nothing is downloaded.
"""

import os
import sys
import time

import jax
import numpy as np
import skimage.data

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from esrgan_jax import metrics  # pylint: disable=g-import-not-at-top

SIZES = ((480, 500), (400, 520), (512, 512), (360, 480), (420, 500), (500, 380), (400, 400),
         (480, 360), (512, 480), (384, 512), (450, 450), (400, 500), (480, 400), (360, 500))


def evaluation_set():
  sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
             skimage.data.rocket(), np.stack([skimage.data.camera()] * 3, axis=-1)]
  rng = np.random.default_rng(0)
  hr, sr = [], []
  for k, (height, width) in enumerate(SIZES):
    source = sources[k % len(sources)]
    tiled = np.tile(source, (2, 2, 1))[:height, :width]
    hr.append(tiled)
    sr.append(np.clip(tiled + rng.normal(0, 5, tiled.shape), 0, 255).astype(np.uint8))
  return sr, hr


def main():
  sr, hr = evaluation_set()
  pristine = metrics.fit_niqe_params([skimage.data.astronaut(), skimage.data.coffee()],
                                     sharpness_threshold=0.0)
  runs = {
      "psnr": lambda s, h: metrics.psnr(s, h, crop_border=4),
      "ssim": lambda s, h: metrics.ssim(s, h, crop_border=4),
      "niqe": lambda s, h: metrics.niqe(s, pristine, crop_border=4),
  }
  print(f"{len(sr)} images, {sum(i.shape[0] * i.shape[1] for i in sr) / 1e6:.2f} Mpixel, "
        f"device {jax.devices()[0].platform}")
  for name, run in runs.items():
    start = time.perf_counter()
    for s, h in zip(sr, hr):
      run(s, h)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for s, h in zip(sr, hr):
      run(s, h)
    print(f"{name}: {time.perf_counter() - start:.2f} s for the set "
          f"(first pass, with compilation: {first:.2f} s)")


if __name__ == "__main__":
  main()
