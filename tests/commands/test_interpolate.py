"""Network interpolation: exact end points, the paper's blend, refused mismatches."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esrgan_jax import interpolate
from esrgan_jax.interpolate import InterpolationError, interpolate_params
from esrgan_jax.models import RRDBNet
from esrgan_jax.models.span import SPAN
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.weights.generator import arch_of, load_generator, save_generator

from tests import REPO_ROOT


def random_params(model, seed):
  """Random parameters of `model`'s shapes, drawn with NumPy (cheaper than compiling init)."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))["params"]
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda leaf: rng.normal(size=leaf.shape).astype(np.float32), shapes)


def tiny(num_feat=8):
  return RRDBNet(scale=4, num_feat=num_feat, num_block=1, num_grow_ch=4)


def leaves(tree):
  return jax.tree_util.tree_leaves(tree)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("generators")
  model = tiny()
  psnr, gan = random_params(model, 1), random_params(model, 2)
  save_generator(root / "psnr", psnr, arch_of(model))
  save_generator(root / "gan", gan, arch_of(model))
  wide = tiny(num_feat=16)
  save_generator(root / "wide", random_params(wide, 3), arch_of(wide))
  # Same architecture record, but one kernel of another shape (a damaged or hand-edited tree).
  odd = random_params(model, 4)
  odd["conv_last"]["kernel"] = np.zeros((3, 3, 8, 1), np.float32)
  save_generator(root / "odd", odd, arch_of(model))
  for name, other in (("compact", SRVGGNetCompact(num_feat=8, num_conv=2)),
                      ("compact_relu", SRVGGNetCompact(num_feat=8, num_conv=2, act_type="relu")),
                      ("compact_b", SRVGGNetCompact(num_feat=8, num_conv=2)),
                      ("span", SPAN(feature_channels=8)), ("span_b", SPAN(feature_channels=8))):
    save_generator(root / name, random_params(other, len(name)), arch_of(other))
  return root, psnr, gan


def test_end_points_return_each_input_exactly(checkpoints):
  _, psnr, gan = checkpoints
  for alpha, expected in ((0.0, psnr), (1.0, gan)):
    blended = interpolate_params(psnr, gan, alpha)
    assert jax.tree.structure(blended) == jax.tree.structure(expected)
    for got, want in zip(leaves(blended), leaves(expected)):
      assert got.dtype == np.float32
      np.testing.assert_array_equal(got, want)


def test_blend_is_the_papers_formula(checkpoints):
  _, psnr, gan = checkpoints
  blended = interpolate_params(psnr, gan, 0.8)
  for got, a, b in zip(leaves(blended), leaves(psnr), leaves(gan)):
    np.testing.assert_allclose(got, 0.2 * a + 0.8 * b, rtol=1e-6, atol=1e-7)


def test_mismatched_trees_and_bad_alpha_are_refused(checkpoints):
  _, psnr, gan = checkpoints
  missing = jax.tree.map(lambda x: x, gan)
  del missing["body_0"]
  with pytest.raises(InterpolationError, match=r"only in the first, e\.g\. body_0/rdb1/conv1/bias"):
    interpolate_params(psnr, missing, 0.5)
  reshaped = jax.tree.map(lambda x: x, gan)
  reshaped["conv_first"]["kernel"] = np.zeros((3, 3, 3, 9), np.float32)
  with pytest.raises(InterpolationError, match=r"conv_first/kernel has shape \(3, 3, 3, 8\) vs "
                     r"\(3, 3, 3, 9\)"):
    interpolate_params(psnr, reshaped, 0.5)
  for alpha in (-0.1, 1.5, float("nan")):
    with pytest.raises(InterpolationError, match="alpha must lie in"):
      interpolate_params(psnr, gan, alpha)


def test_cli_writes_a_generator_checkpoint(checkpoints, capsys):
  root, psnr, gan = checkpoints
  out = root / "blend"
  code = interpolate.main(["--psnr", str(root / "psnr"), "--gan", str(root / "gan"),
                           "--alpha", "0.8", "-o", str(out)])
  assert code == 0, capsys.readouterr().err
  params, arch = load_generator(out)
  assert arch == arch_of(tiny())
  for got, a, b in zip(leaves(params), leaves(psnr), leaves(gan)):
    np.testing.assert_allclose(got, 0.2 * a + 0.8 * b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("other, difference", [
    ("wide", "num_feat 8 vs 16"),
    ("odd", "conv_last/kernel has shape (3, 3, 8, 3) vs (3, 3, 8, 1)"),
])
def test_cli_refuses_different_architectures(checkpoints, capsys, other, difference):
  root, _, _ = checkpoints
  code = interpolate.main(["--psnr", str(root / "psnr"), "--gan", str(root / other),
                           "--alpha", "0.5", "-o", str(root / f"never_{other}")])
  err = capsys.readouterr().err
  assert code == 1  # was 2 before the shared convention of esrgan_jax/cli.py
  assert err == (f"esrgan_jax: error: {root / 'psnr'} (--psnr) and {root / other} (--gan) are "
                 f"different architectures: {difference}\n")
  assert not (root / f"never_{other}").exists()


def test_cli_refuses_alpha_outside_unit_interval_without_traceback(checkpoints):
  root, _, _ = checkpoints
  done = subprocess.run(
      [sys.executable, "-m", "esrgan_jax.interpolate", "--psnr", str(root / "psnr"), "--gan",
       str(root / "gan"), "--alpha", "1.2", "-o", str(root / "never")],
      cwd=REPO_ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=120)
  assert done.returncode == 1  # was 2 before the shared convention of esrgan_jax/cli.py
  assert done.stderr.strip().splitlines() == [
      "esrgan_jax: error: alpha must lie in [0, 1], got 1.2"]


def test_cli_read_only_output_is_one_line(checkpoints, capsys, tmp_path):
  root, _, _ = checkpoints
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o555)
  if os.access(read_only, os.W_OK):  # root writes through file modes; sysfs refuses even root
    read_only = "/sys/esrgan_jax_read_only"
  out = os.path.join(read_only, "blend")
  code = interpolate.main(["--psnr", str(root / "psnr"), "--gan", str(root / "gan"),
                           "--alpha", "0.5", "--output", out])
  err = capsys.readouterr().err
  assert code == 1
  assert err.startswith(f"esrgan_jax: error: {out}: cannot write") and err.count("\n") == 1, err


@pytest.mark.parametrize("first, second, difference", [
    ("psnr", "span", "arch rrdbnet vs span"),
    ("compact", "span", "arch srvgg_compact vs span"),
    ("compact", "compact_relu", "act_type prelu vs relu"),
])
def test_cli_names_the_architectures_that_differ(checkpoints, capsys, first, second, difference):
  root = checkpoints[0]
  assert interpolate.main(["--psnr", str(root / first), "--gan", str(root / second), "--alpha",
                           "0.5", "-o", str(root / "never")]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.endswith(f"different architectures: {difference}\n"), err
  assert not (root / "never").exists()


@pytest.mark.parametrize("first, second", [("compact", "compact_b"), ("span", "span_b")])
def test_compact_and_span_blend_leaf_by_leaf(checkpoints, tmp_path, first, second):
  root = checkpoints[0]
  out = tmp_path / "mixed"
  assert interpolate.main(["--psnr", str(root / first), "--gan", str(root / second), "--alpha",
                           "0.25", "-o", str(out)]) == 0
  (mixed, arch), (a, a_arch), (b, _) = (load_generator(p) for p in (out, root / first,
                                                                   root / second))
  assert arch == a_arch and "arch" in arch
  jax.tree.map(lambda m, x, y: np.testing.assert_allclose(m, 0.75 * x + 0.25 * y, rtol=1e-6,
                                                          atol=1e-6), mixed, a, b)
