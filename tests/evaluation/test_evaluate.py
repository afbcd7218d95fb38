"""Evaluation: metrics of a known upscaler, and eval mode on a saved generator."""

import json
import os

import jax
import numpy as np
import pytest

from configs import esrgan_psnr
from esrgan_jax.data import bicubic
from esrgan_jax.data.eval_sets import create_eval_sets
from esrgan_jax.data.images import to_pixels
from esrgan_jax.evaluation import evaluate, reports
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.training.state import build_generator
from esrgan_jax.weights import generator as generator_weights
from tests.tiny_generator import random_params

SCALE = 4


def nearest_upscale(batch: np.ndarray) -> np.ndarray:
  return np.repeat(np.repeat(batch, SCALE, axis=1), SCALE, axis=2)


def y_psnr(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
  """The field's definition written out: Y of uint8 RGB, borders cropped, peak 255."""
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
  eval_sets = create_eval_sets(eval_config().data, scale=SCALE)
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


def test_bicubic_baseline_is_measured_once_on_the_same_crop(monkeypatch):
  eval_sets = create_eval_sets(eval_config().data, scale=SCALE)
  (image,) = eval_sets["bundled"]
  result = evaluate.evaluate_set(nearest_upscale, eval_sets["bundled"], SCALE, tile=0,
                                 tile_pad=0, num_comparisons=1)
  upscaled = bicubic.imresize(image.lr, output_shape=image.hr.shape[:2])
  expected = y_psnr(upscaled, image.hr, SCALE)
  assert result.bicubic_per_image[image.name]["psnr_y"] == pytest.approx(expected, abs=1e-6)
  assert result.bicubic_means == result.bicubic_per_image[image.name]
  assert set(result.bicubic_means) == set(result.means)
  # Nearest-neighbour upscaling loses to bicubic: the baseline is not the model's numbers.
  assert result.bicubic_means["psnr_y"] > result.means["psnr_y"]
  # The strip's bicubic panel is that same bicubic image, under a caption bar.
  strip = result.comparisons[image.name]
  height, width = image.hr.shape[:2]
  np.testing.assert_array_equal(strip[-height:, width + 4:2 * width + 4], upscaled)
  # Later evaluations of the same images reuse the baseline and its picture.
  calls = []
  monkeypatch.setattr(bicubic, "imresize", lambda *a, **k: calls.append(a) or upscaled)
  again = evaluate.evaluate_set(nearest_upscale, eval_sets["bundled"], SCALE, tile=0,
                                tile_pad=0, num_comparisons=1)
  assert not calls and again.bicubic_means == result.bicubic_means
  np.testing.assert_array_equal(again.comparisons[image.name], strip)
  scalars = reports.scalar_summaries({"bundled": again})
  assert scalars["eval/bundled/bicubic_psnr_y"] == result.bicubic_means["psnr_y"]
  assert scalars["eval/bundled/psnr_y"] == result.means["psnr_y"]
  table = reports.format_table({"bundled": again})
  assert "psnr_y \u2191" in table and "ssim_y \u2191" in table
  model_row, bicubic_row = table.splitlines()[1:]
  assert "model" in model_row and f"{result.means['psnr_y']:.4f}" in model_row
  assert "bicubic" in bicubic_row and f"{expected:.4f}" in bicubic_row


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
  assert table.count("psnr_y") == 1 and "bundled" in table and "bicubic" in table
  # An exported generator has no training step: its results are named after its directory,
  # apart from the training run's WORKDIR/eval.
  out_dir = os.path.join(workdir, "eval_mode", "x4")
  assert not os.path.exists(os.path.join(workdir, "eval"))
  summary = json.loads(open(os.path.join(out_dir, "eval_results.json")).read())
  assert summary["checkpoint"] == generator_dir and summary["step"] is None
  assert summary["sets"]["bundled"]["lr"] == "bicubic"
  assert summary["sets"]["bundled"]["mean"] == pytest.approx(results["bundled"].means)
  assert summary["sets"]["bundled"]["bicubic"]["mean"] == pytest.approx(
      results["bundled"].bicubic_means)
  (name,) = summary["sets"]["bundled"]["images"]
  assert set(summary["sets"]["bundled"]["bicubic"]["images"]) == {name}
  assert os.path.exists(os.path.join(out_dir, f"bundled_{name}_comparison.png"))
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "eval_mode")))


def test_eval_mode_rejects_checkpoint_of_another_scale(generator_dir, tmp_path):
  config = eval_config(checkpoint=generator_dir)
  config.model.scale = 2
  with pytest.raises(generator_weights.CheckpointError, match=r"x4 model but config.model.scale is 2"):
    evaluate.run(config, str(tmp_path))


def test_eval_mode_without_checkpoint_names_the_workdir(tmp_path):
  with pytest.raises(generator_weights.CheckpointError, match="no training checkpoint found"):
    evaluate.run(eval_config(), str(tmp_path))


def test_super_resolve_rounds_halfway_levels_to_even():
  """SR outputs exactly on k + 0.5 levels round to even (images.to_pixels): 2.5, 4.5, 6.5 ->
  2, 4, 6, as `(x * 255.0).round()` in BasicSR's tensor2img."""
  levels = np.array([2.5, 4.5, 6.5], np.float32) / 255.0

  def constant(batch):
    return np.broadcast_to(levels, nearest_upscale(batch).shape)

  sr = evaluate.super_resolve(constant, np.zeros((6, 5, 3), np.uint8), SCALE, tile=0, tile_pad=0)
  assert sr.dtype == np.uint8 and sr.shape == (24, 20, 3)
  np.testing.assert_array_equal(sr, np.broadcast_to([2, 4, 6], sr.shape))


def test_compact_x2_is_evaluated_on_its_own_input_unpadded():
  # An x2 RRDBNet needs even sizes and is fed a reflect-padded input; SRVGGNetCompact takes any
  # size, so evaluation gives exactly its plain output on an odd-sized image, as upscale does.
  model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2)
  params = random_params(model, seed=1)
  assert evaluate.input_multiple(model) == 1
  lr = np.random.default_rng(0).integers(0, 256, (15, 13, 3), np.uint8)
  generate = evaluate.make_generate_fn(model, params)
  sr = evaluate.super_resolve(generate, lr, 2, tile=0, tile_pad=0,
                              multiple=evaluate.input_multiple(model))
  plain = model.apply({"params": params}, lr[None].astype(np.float32) / 255.0)[0]
  np.testing.assert_array_equal(sr, to_pixels(np.asarray(plain)))
  padded = evaluate.super_resolve(generate, lr, 2, tile=0, tile_pad=0)  # RRDBNet's x2 multiple
  assert not np.array_equal(padded, sr)
