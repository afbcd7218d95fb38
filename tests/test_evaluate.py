"""Evaluation: metrics of a known upscaler, and eval mode on a saved generator."""

import json
import os

import jax
import numpy as np
import pytest

from configs import esrgan_psnr
from esrgan_jax import evaluate
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.data import pipeline
from esrgan_jax.train_state import build_generator

SCALE = 4


def nearest_upscale(batch: np.ndarray) -> np.ndarray:
  return np.repeat(np.repeat(batch, SCALE, axis=1), SCALE, axis=2)


def y_psnr(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
  """docs/design.md's definition written out: Y of uint8 RGB, borders cropped, peak 255."""
  def luma(image):
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])
  difference = (luma(sr) - luma(hr))[border:-border, border:-border]
  return 10.0 * np.log10(255.0**2 / np.mean(difference**2))


def eval_config(**eval_fields):
  config = esrgan_psnr.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.eval_max_images = 1
  config.eval.update(num_comparison_images=1, **eval_fields)
  return config


def test_metrics_of_a_known_upscaler():
  eval_sets = pipeline.create_eval_sets(eval_config().data, scale=SCALE)
  (image,) = eval_sets["bundled"]
  result = evaluate.evaluate_set(nearest_upscale, eval_sets["bundled"], SCALE, tile=0,
                                 tile_pad=0, num_comparisons=1)
  expected_sr = nearest_upscale(image.lr[None])[0]
  assert result.per_image[image.name]["psnr_y"] == pytest.approx(
      y_psnr(expected_sr, image.hr, SCALE), abs=1e-6)
  assert result.means["psnr_y"] == result.per_image[image.name]["psnr_y"]
  assert 0 < result.means["ssim_y"] < 1
  assert result.means["psnr_rgb"] < result.means["psnr_y"]  # Y hides chroma errors
  assert result.comparisons[image.name].dtype == np.uint8
  # Tiled inference of a per-pixel upscaler gives the same pictures, hence the same metrics.
  tiled = evaluate.evaluate_set(nearest_upscale, eval_sets["bundled"], SCALE, tile=32,
                                tile_pad=4, num_comparisons=0)
  assert tiled.means == result.means and not tiled.comparisons


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
  config = eval_config()
  generator = build_generator(config)
  params = generator.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"]
  path = str(tmp_path_factory.mktemp("generator") / "x4")
  generator_weights.save_generator(path, params, generator_weights.arch_of(generator))
  return path


def test_eval_mode_writes_table_json_and_pictures(generator_dir, tmp_path, capsys):
  workdir = str(tmp_path)
  results = evaluate.run(eval_config(checkpoint=generator_dir), workdir)
  table = capsys.readouterr().out
  assert "psnr_y" in table and "bundled" in table
  summary = json.loads(open(os.path.join(workdir, "eval", "eval_results.json")).read())
  assert summary["checkpoint"] == generator_dir
  assert summary["sets"]["bundled"]["mean"] == pytest.approx(results["bundled"].means)
  (name,) = summary["sets"]["bundled"]["images"]
  assert os.path.exists(os.path.join(workdir, "eval", f"bundled_{name}_comparison.png"))
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "eval")))


def test_eval_mode_rejects_checkpoint_of_another_scale(generator_dir, tmp_path):
  config = eval_config(checkpoint=generator_dir)
  config.model.scale = 2
  with pytest.raises(generator_weights.CheckpointError,
                     match=r"x4 model but config.model.scale is 2"):
    evaluate.run(config, str(tmp_path))


def test_eval_mode_without_checkpoint_names_the_workdir(tmp_path):
  with pytest.raises(generator_weights.CheckpointError, match="no training checkpoint found"):
    evaluate.run(eval_config(), str(tmp_path))
