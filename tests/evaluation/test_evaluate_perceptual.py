"""Evaluation with NIQE (config.eval.niqe_params) and FID / KID / IS
(config.eval.inception_weights), for the model and its bicubic baseline, in the table, JSON,
TensorBoard scalars and strip captions."""

import json

import jax
import numpy as np
import pytest
import skimage.data

from configs import default
from esrgan_jax import metrics
from esrgan_jax.config_checks import ConfigError
from esrgan_jax.data import datasets
from esrgan_jax.data.bicubic import bicubic_downsample_uint8, imresize
from esrgan_jax.evaluation import evaluate, reports
from esrgan_jax.metrics import fid
from esrgan_jax.metrics.naturalness import NiqeParamsError
from esrgan_jax.models import RRDBNet
from tests.commands.test_metrics import random_inception_dir

SCALE = 4


def test_niqe_and_fid_of_the_model_and_of_bicubic(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  niqe_path = tmp_path / "pristine.npz"
  metrics.save_niqe_params(niqe_path, metrics.fit_niqe_params(
      [skimage.data.astronaut(), skimage.data.coffee()], sharpness_threshold=0.0))
  variables = random_inception_dir(tmp_path / "inception")

  generator = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
  g_shapes = jax.eval_shape(generator.init, jax.random.key(0), np.zeros((1, 16, 16, 3)))
  g_params = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32),
                          g_shapes)["params"]
  photo = skimage.data.chelsea()[:192, :200]
  item = datasets.EvalImage(name="cat", lr=bicubic_downsample_uint8(photo, SCALE), hr=photo)
  eval_config = default.get_config().eval
  eval_config.update(
      tile=0, tile_pad=8, num_comparison_images=1, niqe_params=str(niqe_path),
      inception_weights=str(tmp_path / "inception"), fid_crop_size=64, fid_grid=2,
      kid_subsets=5, is_splits=1)
  generate = evaluate.make_generate_fn(generator, g_params)
  results = evaluate.evaluate_sets(generate, {"one": [item]}, SCALE, eval_config)
  result = results["one"]

  sr = evaluate.super_resolve(generate, item.lr, SCALE, 0, 8)
  upscaled = imresize(item.lr, output_shape=photo.shape[:2])
  pristine = metrics.load_niqe_params(niqe_path)
  assert result.means["niqe"] == pytest.approx(metrics.niqe(sr, pristine, crop_border=SCALE))
  assert result.bicubic_means["niqe"] == pytest.approx(
      metrics.niqe(upscaled, pristine, crop_border=SCALE))

  inner = (slice(SCALE, -SCALE),) * 2
  for image, measured in ((sr, result.set_metrics), (upscaled, result.bicubic_set_metrics)):
    metric = fid.FidMetric(variables, crop_size=64, grid=2, kid_subsets=5, is_splits=1)
    metric.add(image[inner], photo[inner])
    assert measured == pytest.approx(metric.result(), rel=1e-6)
  assert result.set_metrics["fid"] > 0 and result.bicubic_set_metrics["fid"] > 0

  table = reports.format_table(results)
  for header in ("psnr_y ↑", "niqe ↓", "fid ↓", "kid ↓", "is ↑"):
    assert header in table.splitlines()[0]
  bicubic_row = next(line for line in table.splitlines() if "bicubic" in line)
  assert f"{result.bicubic_set_metrics['fid']:.4f}" in bicubic_row
  scalars = reports.scalar_summaries(results)
  assert scalars["eval/one/fid"] == result.set_metrics["fid"]
  assert scalars["eval/one/bicubic_niqe"] == result.bicubic_means["niqe"]
  labels = evaluate._labels(  # pylint: disable=protected-access
      result.per_image["cat"], result.bicubic_per_image["cat"], list(result.means))
  assert labels[2].startswith("SR ") and f"NIQE↓ {result.means['niqe']:.3f}" in labels[2]

  reports.write_results(results, str(tmp_path / "work"), source="test", step=3,
                         lr_sources={"one": "bicubic"})
  summary = json.loads((tmp_path / "work" / "eval" / "eval_results.json").read_text())
  assert summary["sets"]["one"]["set"] == pytest.approx(result.set_metrics)
  assert summary["sets"]["one"]["bicubic"]["set"] == pytest.approx(result.bicubic_set_metrics)
  assert summary["directions"]["fid"] == "↓" and summary["directions"]["is"] == "↑"

  # A second evaluation runs only the SR image through the Inception: bicubic's and HR's features
  # are cached with the baseline, and the metric objects are the same (loaded once).
  calls = []
  features = fid.FidMetric.features
  monkeypatch.setattr(fid.FidMetric, "features",
                      lambda self, image: calls.append(image.shape) or features(self, image))
  again = evaluate.evaluate_sets(generate, {"one": [item]}, SCALE, eval_config)["one"]
  assert len(calls) == 1 and again.set_metrics == result.set_metrics
  assert evaluate.configured_metrics(eval_config).fid is evaluate.configured_metrics(
      eval_config).fid

  # One-line errors naming the field: a missing pristine model, crops larger than an image.
  missing = default.get_config().eval
  missing.niqe_params = str(tmp_path / "missing.npz")
  with pytest.raises(NiqeParamsError, match="config.eval.niqe_params: .*missing.npz"):
    evaluate.configured_metrics(missing)
  eval_config.update(niqe_params="", fid_crop_size=300)
  with pytest.raises(ConfigError,
                     match="config.eval.fid_crop_size: evaluation image cat: FID crops are 300x"):
    evaluate.evaluate_sets(generate, {"one": [item]}, SCALE, eval_config)
