"""The benchmarks' own code: the other ways of writing a conv compute the same conv; the input
pipeline benchmark's grain loader yields the pipeline's own batches."""

import argparse
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)
import conv_gradients  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize("name", ["im2col", "winograd"])
def test_conv_formulations_match_xla_conv_and_its_gradients(name):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 6, 8, 5), np.float32)
  kernel = rng.standard_normal((3, 3, 5, 7), np.float32)
  grad_out = rng.standard_normal((2, 6, 8, 7), np.float32)
  expected, expected_vjp = jax.vjp(conv_gradients.xla_conv, x, kernel)
  output, vjp = jax.vjp(conv_gradients.FORMULATIONS[name], x, kernel)
  np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
  for got, want in zip(vjp(grad_out), expected_vjp(grad_out)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_step_convolutions_tells_forward_from_both_gradients():
  import step_convolutions  # pylint: disable=g-import-not-at-top
  x = np.zeros((2, 6, 8, 5), np.float32)
  kernel = np.zeros((3, 3, 5, 7), np.float32)

  def loss(x, kernel):
    return conv_gradients.xla_conv(x, kernel).sum()
  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel).jaxpr
  kinds = [step_convolutions.jax_convolution_kind(equation)
           for equation in step_convolutions.jaxpr_convolutions(jaxpr, [])]
  assert sorted(kinds) == ["forward", "input_gradient", "weight_gradient"]


def run_input_pipeline(*flags, env=None):
  return subprocess.run([sys.executable, os.path.join(BENCHMARKS, "input_pipeline.py"), *flags],
                        capture_output=True, text=True, timeout=300, env=env)


def test_input_pipeline_grain_option_fails_in_one_line_without_grain(tmp_path):
  # An importable `grain` that raises ImportError stands for a machine without the package.
  (tmp_path / "grain.py").write_text("raise ImportError('No module named grain')\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
  result = run_input_pipeline("--grain", "--rows", "bundled", "--steps", "1", env=env)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      "benchmarks/input_pipeline.py: --grain needs the grain package "
      "(pip install -r requirements-dev.txt)"]


@pytest.mark.parametrize("threads, processes", [(2, 0), (1, 2)])
def test_grain_loader_yields_the_thread_pools_batches(threads, processes):
  import grain  # pylint: disable=g-import-not-at-top,unused-import
  from absl import flags  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  args = argparse.Namespace(batch_size=3, scale=4, steps=3)
  data_config = input_pipeline.default.data_config()
  data_config.update(dataset="bundled", patch_size=32, num_workers=2)
  expected = input_pipeline.open_iterator(data_config, args)
  loader = input_pipeline.grain_loader(data_config, args, 3, threads, processes)
  batches = list(loader)
  assert len(batches) == 3
  for batch in batches:
    want = next(expected)
    for key in ("lr", "hr"):
      np.testing.assert_array_equal(batch[key], want[key])
  expected.close()


def test_realesrgan_rows_time_the_step_with_and_without_the_degradations(tmp_path):
  out = tmp_path / "realesrgan.json"
  result = subprocess.run(
      [sys.executable, os.path.join(BENCHMARKS, "benchmark.py"), "--num_block", "1",
       "--num_feat", "16", "--num_grow_ch", "16", "--d_feat", "16", "--sizes", "2x64",
       "--crop_pad_size", "96", "--rows", "realesrgan,realesrgan_nodeg",
       "--groups", "jax:float32", "--steps", "3", "--warmup", "1", "--json", str(out)],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  run = json.loads(out.read_text())
  seconds = {r["row"]: r["seconds"] for r in run["results"]}
  assert sorted(seconds) == ["realesrgan", "realesrgan_nodeg"]
  assert all(s > 0 for s in seconds.values())
  # The degraded step's GT squares are 96^2 uint8, not the 64^2 patch of the ready pair.
  assert all(run["flops"][f"{row}:2x64"] > 0 for row in seconds)
  [(size, group, with_s, without_s, share)] = run["degradation_shares"]
  assert (size, group) == ("2x64", "jax:float32")
  assert (with_s, without_s) == (seconds["realesrgan"], seconds["realesrgan_nodeg"])
  assert share == pytest.approx((with_s - without_s) / with_s)
  # Timing is the benchmark's job, not the test's: on a shared CPU two medians of three steps
  # can come out either way round, so only the bound the formula guarantees is checked.
  assert share < 1
  assert f"share {share:.1%}" in result.stdout
