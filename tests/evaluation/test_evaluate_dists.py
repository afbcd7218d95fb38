"""Evaluation and eval mode with the optional DISTS metric (config.eval.dists_weights), for the model
and its bicubic baseline, on a small evaluation set of one photograph crop."""

import json
import os

import ml_collections
import numpy as np
import pytest
import skimage.data
from PIL import Image

from configs import esrgan_psnr
from esrgan_jax import config_checks
from esrgan_jax.cli import ConfigError
from esrgan_jax.data.bicubic import imresize
from esrgan_jax.data.eval_sets import create_eval_sets
from esrgan_jax.evaluation import evaluate
from esrgan_jax.metrics.dists import DistsMetric
from esrgan_jax.training.state import build_generator
from esrgan_jax.weights import generator as generator_weights
from tests.commands.test_metrics_dists import random_dists_dir
from tests.tiny_generator import random_params

SCALE = 4


def test_eval_mode_measures_dists_beside_bicubic(tmp_path, capsys):
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  Image.fromarray(skimage.data.chelsea()[40:104, 100:172]).save(hr_dir / "cat.png")
  random_dists_dir(tmp_path / "dists")
  config = esrgan_psnr.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.eval_sets = ml_collections.ConfigDict({"tiny": {"hr_dir": str(hr_dir),
                                                              "lr_dir": ""}})
  config.eval.update(num_comparison_images=1, dists_weights=str(tmp_path / "dists"))
  generator = build_generator(config)
  params = random_params(generator)
  checkpoint = str(tmp_path / "x4")
  generator_weights.save_generator(checkpoint, params, generator_weights.arch_of(generator))
  config.eval.checkpoint = checkpoint

  results = evaluate.run(config, str(tmp_path / "work"))
  assert "dists ↓" in capsys.readouterr().out
  result = results["tiny"]
  assert set(result.means) == {"psnr_y", "ssim_y", "psnr_rgb", "dists"}
  (item,) = create_eval_sets(config.data, scale=SCALE)["tiny"]
  sr = evaluate.super_resolve(evaluate.make_generate_fn(generator, params), item.lr, SCALE, 0, 16)
  upscaled = imresize(item.lr, output_shape=item.hr.shape[:2])
  metric = DistsMetric.from_dir(tmp_path / "dists")
  inner = (slice(SCALE, -SCALE),) * 2
  assert result.means["dists"] == pytest.approx(metric(sr[inner], item.hr[inner]), rel=1e-6)
  assert result.bicubic_means["dists"] == pytest.approx(
      metric(upscaled[inner], item.hr[inner]), rel=1e-6)
  assert result.means["dists"] > 0 and result.bicubic_means["dists"] > 0

  summary = json.loads((tmp_path / "work" / "eval_mode" / "x4" / "eval_results.json").read_text())
  assert summary["sets"]["tiny"]["mean"]["dists"] == pytest.approx(result.means["dists"])
  assert summary["sets"]["tiny"]["bicubic"]["mean"]["dists"] == pytest.approx(
      result.bicubic_means["dists"])
  assert summary["directions"]["dists"] == "↓"
  assert os.path.exists(tmp_path / "work" / "eval_mode" / "x4" / "tiny_cat_comparison.png")


def test_a_missing_dists_directory_is_a_config_error(tmp_path):
  config = esrgan_psnr.get_config()
  config.eval.dists_weights = str(tmp_path / "none")
  with pytest.raises(ConfigError, match="config.eval.dists_weights: .*none does not exist"):
    config_checks.validate(config, 1, "eval")
