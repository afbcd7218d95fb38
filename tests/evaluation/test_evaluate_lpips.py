"""Evaluation with the optional LPIPS metric, from a converted LPIPS directory."""

import json

import jax
import numpy as np

from configs import default
from esrgan_jax.data import datasets
from esrgan_jax.data.bicubic import bicubic_downsample_uint8
from esrgan_jax.data.images import read_image
from esrgan_jax.evaluation import evaluate, reports
from esrgan_jax.metrics.lpips import LpipsMetric
from esrgan_jax.models import RRDBNet
from esrgan_jax.weights.lpips import lpips_param_shapes, save_lpips


def test_lpips_joins_the_metrics_on_the_cropped_images(tmp_path):
  rng = np.random.default_rng(0)
  shapes = lpips_param_shapes("alex")
  params = jax.tree.map(lambda shape: np.abs(rng.normal(0, 0.05, shape)).astype(np.float32),
                        shapes, is_leaf=lambda x: isinstance(x, tuple))
  save_lpips(tmp_path / "lpips_alex", "alex", params)

  generator = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
  g_shapes = jax.eval_shape(generator.init, jax.random.key(0), np.zeros((1, 16, 16, 3)))
  g_params = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32),
                          g_shapes)["params"]
  path = datasets.bundled_photo_paths(datasets.BUNDLED_EVAL_PHOTOS)[0]
  photo = read_image(path)[:96, :128]
  item = datasets.EvalImage(name="crop", lr=bicubic_downsample_uint8(photo, 4), hr=photo)

  eval_config = default.get_config().eval
  eval_config.update(tile=0, tile_pad=8, num_comparison_images=0,
                     lpips_weights=str(tmp_path / "lpips_alex"))
  generate = evaluate.make_generate_fn(generator, g_params)
  results = evaluate.evaluate_sets(generate, {"one": [item]}, 4, eval_config)
  means = results["one"].means
  assert set(means) == {"psnr_y", "ssim_y", "psnr_rgb", "lpips_alex"}

  sr = evaluate.super_resolve(generate, item.lr, 4, 0, 8)
  metric = LpipsMetric.from_dir(tmp_path / "lpips_alex")
  expected = metric(sr[4:-4, 4:-4], photo[4:-4, 4:-4])
  assert np.isfinite(expected) and expected > 0
  np.testing.assert_allclose(means["lpips_alex"], expected, rtol=1e-6)
  assert "lpips_alex" in reports.format_table(results)


def test_lpips_in_the_trainers_periodic_evaluation(tmp_path, monkeypatch):
  """Two periodic evaluations of a training run carry LPIPS, model and bicubic, on one loaded
  metric whose jitted program is compiled once for the run's eval image."""
  from esrgan_jax.training import train  # pylint: disable=import-outside-toplevel
  from esrgan_jax.metrics import lpips  # pylint: disable=import-outside-toplevel
  from tests.training.test_train import psnr_config  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  shapes = lpips_param_shapes("alex")
  params = jax.tree.map(lambda shape: np.abs(rng.normal(0, 0.05, shape)).astype(np.float32),
                        shapes, is_leaf=lambda x: isinstance(x, tuple))
  save_lpips(tmp_path / "lpips_alex", "alex", params)
  config = psnr_config(num_steps=2)
  config.train.update(eval_every_steps=1, checkpoint_every_steps=2)
  config.eval.lpips_weights = str(tmp_path / "lpips_alex")
  calls = []
  evaluate_sets = evaluate.evaluate_sets

  def recorded(*args, **kwargs):
    results = evaluate_sets(*args, **kwargs)
    calls.append(results)
    return results

  lpips._apply.clear_cache()  # pylint: disable=protected-access
  monkeypatch.setattr(evaluate, "evaluate_sets", recorded)
  train.train_and_evaluate(config, str(tmp_path / "work"))
  assert len(calls) == 2
  for results in calls:
    (result,) = results.values()
    assert np.isfinite(result.means["lpips_alex"]) and np.isfinite(
        result.bicubic_means["lpips_alex"])
  assert lpips._apply._cache_size() == 1  # pylint: disable=protected-access
  summary = json.loads((tmp_path / "work" / "eval" / "eval_results.json").read_text())
  assert "lpips_alex" in summary["sets"]["bundled"]["mean"]
  assert summary["directions"]["lpips_alex"] == "↓"
