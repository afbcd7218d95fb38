"""LDL's artifact map and loss (esrgan_jax.training.losses) against reference/torch_ldl.py, the
PyTorch re-statement of csjliang/LDL's published formulas: values, and gradients w.r.t. the
generator output (through the map too, as the published code keeps that path), float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from esrgan_jax.training import losses
from reference import torch_ldl

TOLERANCE = 1e-5


def assert_close(actual, expected):
  """Within 1e-5, absolute and relative to the largest entry (the values are ~1e-3 to 1e-5)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  error, scale = np.max(np.abs(actual - expected)), np.max(np.abs(expected))
  assert scale > 0
  assert error <= TOLERANCE * scale, f"max abs error {error:.3g} at scale {scale:.3g}"


def nchw(nhwc, requires_grad=False):
  return torch.tensor(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)),
                      requires_grad=requires_grad)


def nhwc(tensor):
  return tensor.detach().numpy().transpose(0, 2, 3, 1)


def images(seed=0, shape=(2, 12, 10, 3), noise=0.1):
  """(gt, output, ema_output): an output and an EMA output near the GT, in [0, 1]."""
  rng = np.random.default_rng(seed)
  gt = rng.random(shape, np.float32)
  near = lambda: np.clip(gt + rng.normal(0, noise, shape), 0, 1).astype(np.float32)
  return gt, near(), near()


def torch_map_and_grads(gt, output, ema, ksize, probe):
  """The torch map, and the gradients w.r.t. the output of sum(map * probe) and of the loss."""
  out = nchw(output, requires_grad=True)
  weight = torch_ldl.artifact_map(nchw(gt), out, nchw(ema), ksize)
  (map_grad,) = torch.autograd.grad((weight * nchw(probe)).sum(), out)
  out = nchw(output, requires_grad=True)
  loss = torch_ldl.ldl_loss(nchw(gt), out, nchw(ema), ksize)
  loss.backward()
  return nhwc(weight), nhwc(map_grad), loss.item(), nhwc(out.grad)


@pytest.mark.parametrize("ksize", [7, 3])
def test_artifact_map_and_loss_match_the_published_formulas(ksize):
  gt, output, ema = images()
  probe = np.random.default_rng(1).random(gt.shape[:3] + (1,), np.float32)
  weight, map_grad, loss, loss_grad = torch_map_and_grads(gt, output, ema, ksize, probe)
  assert 0 < np.mean(weight == 0) < 1  # both branches of the r_output < r_ema mask are taken
  assert_close(losses.artifact_map(gt, output, ema, ksize), weight)
  assert_close(jax.grad(lambda o: jnp.sum(losses.artifact_map(gt, o, ema, ksize) * probe))(output),
               map_grad)
  value, grad = jax.value_and_grad(lambda o: losses.ldl_loss(gt, o, ema, ksize))(output)
  assert_close(value, loss)
  assert_close(grad, loss_grad)


def test_artifact_map_is_zero_exactly_where_the_output_beats_the_ema_output():
  gt, output, _ = images(seed=2, shape=(1, 16, 16, 3))
  # EMA: perfect on the left half (never zeroes the map there), far off on the right (zeroes it).
  ema = gt.copy()
  ema[:, :, 8:] = 1.0 - gt[:, :, 8:]
  r_output = np.abs(gt - output).sum(-1, keepdims=True)
  r_ema = np.abs(gt - ema).sum(-1, keepdims=True)
  weight = np.asarray(losses.artifact_map(gt, output, ema))
  assert np.all(weight[r_output < r_ema] == 0)
  assert np.all(weight[:, :, :8] != 0) and np.mean(weight[:, :, 8:] == 0) > 0.9
  torch_weight, *_ = torch_map_and_grads(gt, output, ema, 7, np.ones_like(weight))
  assert_close(weight, torch_weight)
  # A tie (EMA output == output) keeps the weight: the mask is strict, as published.
  unmasked = np.asarray(losses.artifact_map(gt, output, output))
  assert np.all(unmasked != 0)
  np.testing.assert_array_equal(weight[:, :, :8], unmasked[:, :, :8])


def test_ema_output_gets_no_gradient_and_only_a_worse_ema_output_masks_everything():
  gt, output, ema = images(seed=3)
  grad_ema = jax.grad(lambda e: losses.ldl_loss(gt, output, e))(ema)
  assert not np.any(np.asarray(grad_ema))
  # An EMA output further from the GT than the output everywhere: nothing is an artifact.
  assert float(losses.ldl_loss(gt, output, gt + 2.0)) == 0.0
  # A perfect EMA output: every residual of the output counts.
  assert np.all(np.asarray(losses.artifact_map(gt, output, gt)) != 0)


def test_local_variance_matches_numpy_windows_and_refuses_even_windows():
  residual = np.random.default_rng(4).random((1, 9, 8, 1), np.float32)
  padded = np.pad(residual[0, :, :, 0], 2, mode="reflect")
  expected = np.array([[np.var(padded[i:i + 5, j:j + 5], ddof=1) for j in range(8)]
                       for i in range(9)])
  np.testing.assert_allclose(np.asarray(losses.local_variance(residual, 5))[0, :, :, 0],
                             expected, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="ksize must be a positive odd number"):
    losses.local_variance(residual, 4)
