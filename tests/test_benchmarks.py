"""The benchmarks' own JAX code: the other ways of writing a conv compute the same conv."""

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
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
