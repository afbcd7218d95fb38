"""Periodic evaluation compiles the generator once per eval image shape for the whole run."""

import time

import jax

from esrgan_jax import evaluate, inference, train
from test_train import persistent_compilation_cache  # pylint: disable=unused-import
from test_train import psnr_config


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
  inference.apply_generator.clear_cache()
  compiles = []

  def on_event(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(kwargs.get("fun_name", ""))

  jax.monitoring.register_event_duration_secs_listener(on_event)
  try:
    train.train_and_evaluate(config, str(tmp_path))
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)

  assert len(durations) == 2 and len(shapes) == 2
  # One cache entry per eval image shape, whatever the number of evaluations.
  assert inference.apply_generator._cache_size() == len(shapes)  # pylint: disable=protected-access
  generator_compiles = [name for name in compiles if "apply_generator" in name]
  assert len(generator_compiles) == len(shapes), compiles
  with capsys.disabled():
    print(f"\nfirst evaluation {durations[0]:.2f} s, second {durations[1]:.2f} s")
