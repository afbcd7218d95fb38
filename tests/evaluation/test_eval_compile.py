"""Periodic evaluation compiles the generator once per eval image shape for the whole run."""

import time

import pytest

from esrgan_jax.evaluation import evaluate
from esrgan_jax.inference import apply
from esrgan_jax.training import train
from tests.compile_events import recorded_compiles
from tests.training.test_train import psnr_config

pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def test_two_evaluations_compile_once_per_image_shape(tmp_path, monkeypatch, capsys):
  config = psnr_config(num_steps=4)
  config.data.eval_max_images = 2  # chelsea and rocket: two shapes
  config.train.update(eval_every_steps=2, checkpoint_every_steps=2)
  shapes, durations = set(), []
  evaluate_sets = evaluate.evaluate_sets

  def timed_evaluate_sets(generate_fn, eval_sets, *args, **kwargs):
    shapes.update(image.lr.shape for images in eval_sets.values() for image in images)
    start = time.perf_counter()
    results = evaluate_sets(generate_fn, eval_sets, *args, **kwargs)
    durations.append(time.perf_counter() - start)
    return results

  monkeypatch.setattr(evaluate, "evaluate_sets", timed_evaluate_sets)
  apply.clear_cache()
  with recorded_compiles() as compiles:
    train.train_and_evaluate(config, str(tmp_path))

  assert len(durations) == 2 and len(shapes) == 2
  # One cache entry per eval image shape, whatever the number of evaluations.
  assert apply.cache_size() == len(shapes)
  generator_compiles = [name for name in compiles if "apply_generator" in name]
  assert len(generator_compiles) == len(shapes), compiles
  with capsys.disabled():
    print(f"\nfirst evaluation {durations[0]:.2f} s, second {durations[1]:.2f} s")
