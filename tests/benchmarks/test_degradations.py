"""python -m benchmarks.degradations end to end on tiny sizes, and its PyTorch pipeline's parts."""

import re

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import degradations as benchmark
from esrgan_jax.data import degradations as deg
from reference import torch_degradations as td
from tests.data.degradations.test_filters_noise_resampling import torch_filter2d, torch_usm
from tests.data.degradations.test_jpeg import photo_crops, reference_diffjpeg


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


def _mean_abs_to_area_gt(gt, lr):
  small = F.interpolate(_nchw(gt), size=lr.shape[1:3], mode="area").permute(0, 2, 3, 1).numpy()
  return np.abs(lr - small).mean(axis=(1, 2, 3))


def test_speed_mode_runs_both_pipelines_to_lr_of_the_same_law(capsys):
  # GT 80: torch's reflect padding needs images wider than half a 21-tap kernel, also after the
  # first resize's smallest scale (0.15 x 80 = 12).
  results = benchmark.main(["speed", "--batch", "8", "--sizes", "80", "--steps", "1",
                            "--step_ms", "50"])
  out = capsys.readouterr().out
  figures = re.search(
      r"jax ([0-9.]+) ms/batch, torch \(cpu\) ([0-9.]+) ms/batch, jax is ([0-9.]+)x", out)
  jax_ms, torch_ms, ratio = map(float, figures.groups())
  assert jax_ms > 0 and torch_ms > 0 and abs(ratio - torch_ms / jax_ms) < 0.01 * ratio + 0.01
  share = float(re.search(r"degradations ([0-9.]+)% of a 50.0 ms train step", out).group(1))
  assert abs(share - 100 * jax_ms / (50 + jax_ms)) < 0.1
  r = results[80]
  for lr in (r["jax_lr"], r["torch_lr"]):
    assert lr.shape == (8, 20, 20, 3) and lr.dtype == np.float32
    assert lr.min() >= 0 and lr.max() <= 1
    np.testing.assert_allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # 8-bit levels
  # Different random draws, the same degradation law: each LR is near the GT's area downscale
  # (mean absolute difference of a few to a few tens of levels) and neither pipeline is far
  # gentler or harsher than the other over the batch.
  jax_mad, torch_mad = (_mean_abs_to_area_gt(r["gt"], r[k]) for k in ("jax_lr", "torch_lr"))
  for mad in (jax_mad, torch_mad):
    assert np.all(mad > 1 / 255) and np.all(mad < 0.35), mad
  assert 1 / 3 < jax_mad.mean() / torch_mad.mean() < 3, (jax_mad, torch_mad)


def test_torch_pipeline_parts_match_the_references():
  rng = np.random.default_rng(0)
  images = np.stack(photo_crops([(40, 56)] * 2)).astype(np.float32)
  quality = np.array([35.0, 88.0], np.float32)
  got = td.diff_jpeg(_nchw(images), torch.from_numpy(quality)).permute(0, 2, 3, 1).numpy()
  assert np.abs(got - reference_diffjpeg(images, quality)).mean() < 1e-4
  assert np.abs(got - np.asarray(deg.jpeg_compress(jnp.asarray(images), quality))).mean() < 1e-4
  kernels = td.random_kernels(64, (0.2, 3.0), "cpu")
  np.testing.assert_allclose(kernels.sum(dim=(1, 2)).numpy(), 1, atol=1e-5)
  x = _nchw(rng.random((2, 30, 26, 3), dtype=np.float32))
  np.testing.assert_allclose(td.filter2d(x, kernels[:2]), torch_filter2d(x, kernels[:2]),
                             atol=1e-6)
  np.testing.assert_allclose(td.usm_sharp(x), torch_usm(x), atol=1e-5)
