"""The benchmarks' own code: the other ways of writing a conv compute the same conv; the input
pipeline benchmark's grain loader yields the pipeline's own batches."""

import argparse
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import conv_gradients
from tests import REPO_ROOT


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
  from benchmarks import step_convolutions  # pylint: disable=g-import-not-at-top
  x = np.zeros((2, 6, 8, 5), np.float32)
  kernel = np.zeros((3, 3, 5, 7), np.float32)

  def loss(x, kernel):
    return conv_gradients.xla_conv(x, kernel).sum()
  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel).jaxpr
  kinds = [step_convolutions.jax_convolution_kind(equation)
           for equation in step_convolutions.jaxpr_convolutions(jaxpr, [])]
  assert sorted(kinds) == ["forward", "input_gradient", "weight_gradient"]


def run_input_pipeline(*flags, env=None):
  return subprocess.run([sys.executable, "-m", "benchmarks.input_pipeline", *flags],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_input_pipeline_grain_option_fails_in_one_line_without_grain(tmp_path):
  # An importable `grain` that raises ImportError stands for a machine without the package.
  (tmp_path / "grain.py").write_text("raise ImportError('No module named grain')\n")
  inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + inherited))
  result = run_input_pipeline("--grain", "--rows", "bundled", "--steps", "1", env=env)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      "benchmarks/input_pipeline.py: --grain needs the grain package "
      "(pip install -r requirements-dev.txt)"]


@pytest.mark.parametrize("threads, processes", [(2, 0), (1, 2)])
def test_grain_loader_yields_the_thread_pools_batches(threads, processes):
  import grain  # pylint: disable=g-import-not-at-top,unused-import
  from absl import flags  # pylint: disable=g-import-not-at-top
  from benchmarks import input_pipeline  # pylint: disable=g-import-not-at-top
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


def test_ldl_rows_need_the_vgg_patch_and_pair_with_their_twins():
  from benchmarks import benchmark, report  # pylint: disable=g-import-not-at-top
  from benchmarks.common import size_plan  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit):  # the VGG-style discriminator takes 128 or 256 px only
    benchmark.parse_args(["--rows", "gan_ldl", "--sizes", "2x32"])
  args = benchmark.parse_args(["--rows", "realesrgan_ldl,gan_ldl,gan,realesrgan_nodeg",
                               "--sizes", "2x32,2x128"])
  assert [rows for _, rows in size_plan(args)] == [
      ["realesrgan_nodeg", "realesrgan_ldl"],
      ["gan", "gan_ldl", "realesrgan_nodeg", "realesrgan_ldl"]]
  results = [dict(row=row, batch=2, patch=128, group="jax:float32", seconds=seconds)
             for row, seconds in (("gan", 1.0), ("gan_ldl", 1.25), ("realesrgan_ldl", 2.0))]
  # realesrgan_ldl's twin (realesrgan_nodeg) was not measured: no cost for it.
  assert report.ldl_costs(results) == [("gan_ldl", "2x128", "jax:float32", 1.25, 1.0, 0.25)]
