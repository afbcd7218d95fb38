"""Time of PSNR, SSIM, NIQE, FID, KID and IS on a Set14-size set: 14 images of about 500x400.

  python -m benchmarks.metrics_speed [--skip_fid]
  python -m benchmarks.metrics_speed --sqrtm

Prints one line per metric: seconds for the whole set, after one warm-up pass (NIQE's block
features compile once per block size, here already while fitting the model). The pristine
model is fitted from other bundled photos, so nothing is downloaded.

FID, KID and IS run on the evaluation's default crops (3 x 3 crops of 128 px an image, each
resized to 299: 126 SR and 126 HR crops) through the FID InceptionV3 with random weights made
here (He-normal convolutions, identity BatchNorm): the time is the real network's, only the
values mean nothing. One line gives the Inception pass over SR and HR (after compiling on one
image), then one line per statistic on those features.

--sqrtm compares, on random Gaussian features of the same shape (126 x 2048 a set), the FID of
pytorch-fid's route (scipy.linalg.sqrtm of the 2048 x 2048 covariance product) with metrics/fid.py's
(the nuclear norm of the 126 x 126 cross-Gram matrix): time and value of each.
"""

import sys
import time

import jax
import numpy as np
import skimage.data

from esrgan_jax import metrics
from esrgan_jax.metrics import fid
from esrgan_jax.runtime import backends
from tests.random_inception import random_inception_variables

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


def time_fid(sr, hr):
  metric = fid.FidMetric(random_inception_variables(), is_splits=1)
  start = time.perf_counter()
  metric.features(sr[0])
  compile_time = time.perf_counter() - start
  start = time.perf_counter()
  for s, h in zip(sr, hr):
    metric.add(s, h)
  features = time.perf_counter() - start
  crops = len(sr) * metric.grid**2
  print(f"inception features: {features:.2f} s for {crops} SR + {crops} HR crops "
        f"(compilation before: {compile_time:.2f} s)")
  sr_features = np.concatenate(metric._sr_features)  # pylint: disable=protected-access
  sr_logits = np.concatenate(metric._sr_logits)  # pylint: disable=protected-access
  hr_features = np.concatenate(metric._hr_features)  # pylint: disable=protected-access
  for name, run in (("fid", lambda: fid.fid(sr_features, hr_features)),
                    ("kid", lambda: fid.kid(sr_features, hr_features)),
                    ("is", lambda: fid.inception_score(sr_logits, splits=1))):
    start = time.perf_counter()
    run()
    print(f"{name}: {time.perf_counter() - start:.2f} s on the features")


def compare_sqrtm(samples: int = 126):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(samples, 2048)), rng.normal(0.1, 1.1, size=(samples, 2048))
  start = time.perf_counter()
  via_sqrtm = fid.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                                   np.cov(y, rowvar=False))
  sqrtm_time = time.perf_counter() - start
  start = time.perf_counter()
  via_nuclear_norm = fid.fid(x, y)
  print(f"FID of {samples} x 2048 Gaussian features: sqrtm {via_sqrtm:.6f} in {sqrtm_time:.2f} s, "
        f"nuclear norm {via_nuclear_norm:.6f} in {time.perf_counter() - start:.2f} s, relative "
        f"difference {abs(via_sqrtm - via_nuclear_norm) / via_nuclear_norm:.1e}")


def main():
  backends.start_quietly()
  if "--sqrtm" in sys.argv[1:]:
    compare_sqrtm()
    return
  skip_fid = "--skip_fid" in sys.argv[1:]
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
  if not skip_fid:
    time_fid(sr, hr)


if __name__ == "__main__":
  main()
