"""The Flax SPAN computes what the PyTorch reference (spandrel's SPAN) computes, in both forms.

Weights are the reference's own fresh init (seeded): with SPAN's x255 input normalisation, larger
random weights make the network so ill-conditioned that float32 itself is off by 0.2% from
float64, in PyTorch as in JAX. The reference's keys map onto Flax paths one to one, so the
weights move by splitting each key at its dots.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

from esrgan_jax.models import span
from esrgan_jax.models.shuffle import pixel_shuffle
from esrgan_jax.models.span import SPAN
from reference import torch_span
from reference.torch_models import to_nchw, to_nhwc

TOLERANCE = 1e-4
# Of the output's largest magnitude (~30 with norm, where float32 steps are 2e-6 and spandrel's
# own eval and train modes differ by 1e-5); without norm outputs are < 1 and it is absolute.
FOLD_TOLERANCE = 1e-5
# SPAN(3, 3, feature_channels=48, upscale=4): the branch form that trains, the folded form that
# runs, and spandrel's state dict, which holds both (the conv_cat and upsampler convs once).
X4_48_BRANCH_PARAMS = 1_840_488
X4_48_FOLDED_PARAMS = 426_288
X4_48_STATE_DICT_PARAMS = 2_236_728


def images(shape, seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def torch_span_model(seed=0, **arch):
  torch.manual_seed(seed)
  return torch_span.SPAN(**arch)


def is_branch_key(key):
  return ".conv." in key or ".sk." in key


def in_form(key, deploy):
  """Whether a state-dict key is a parameter of the branch form (deploy=False) or the folded."""
  if key == "no_norm":  # spandrel's marker for norm=False, not a parameter
    return False
  return not is_branch_key(key) if deploy else "eval_conv" not in key


def flax_params(state_dict, deploy=False):
  """The reference's state dict as Flax params of one form: key a.b.weight -> a/b/kernel."""
  flat = {}
  for key, value in state_dict.items():
    if not in_form(key, deploy):
      continue
    value = value.detach().numpy()
    *module, leaf = key.split(".")
    flat[(*module, "kernel" if leaf == "weight" else leaf)] = (
        value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
  return traverse_util.unflatten_dict(flat)


def torch_forward(model, x_nhwc, train):
  model.train(train)
  with torch.no_grad():
    return to_nhwc(model(to_nchw(x_nhwc)))


def max_error(actual, expected):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
  return np.abs(actual - expected).max(), np.abs(expected).max()


def assert_close(actual, expected, what, tolerance=TOLERANCE, relative=False):
  """Max abs difference <= tolerance; `relative`: in units of the reference's largest magnitude
  where that is over 1 (gradients reach ~200, where float32 rounding alone exceeds 1e-4)."""
  error, scale = max_error(actual, expected)
  bound = tolerance * max(1.0, scale) if relative else tolerance
  assert error <= bound, f"{what}: max difference {error:.3g} > {bound:.3g} (scale {scale:.3g})"


ARCHS = [dict(feature_channels=8, upscale=s, norm=norm) for s in (1, 2, 3, 4)
         for norm in (True, False)] + [dict(feature_channels=48, upscale=4, norm=True),
                                       dict(feature_channels=52, upscale=2, norm=True)]


def arch_id(arch):
  return f"f{arch['feature_channels']}-x{arch['upscale']}-{'norm' if arch['norm'] else 'no_norm'}"


@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_both_forms_match_torch(arch):
  model = torch_span_model(seed=arch["upscale"], **arch)
  x = images((2, 13, 11, 3))  # odd and not square, so that H/W mix-ups show
  branch = SPAN(**arch)
  folded = SPAN(**arch, deploy=True)
  params = flax_params(model.state_dict())
  out = branch.apply({"params": params}, x)
  assert out.shape == (2, 13 * arch["upscale"], 11 * arch["upscale"], 3)
  assert_close(out, torch_forward(model, x, train=True), "branch form vs torch train mode")
  # spandrel's eval mode folds the branches into eval_conv itself and runs that.
  torch_eval = torch_forward(model, x, train=False)
  assert_close(folded.apply({"params": flax_params(model.state_dict(), deploy=True)}, x),
               torch_eval, "torch's folded eval_conv in the Flax folded form")
  out_folded = folded.apply({"params": span.fold(params)}, x)
  assert_close(out_folded, torch_eval, "Flax folded form vs torch eval mode")
  assert_close(out_folded, out, "folded form vs branch form", FOLD_TOLERANCE, relative=True)


def test_gradients_match_torch_train_mode():
  arch = dict(feature_channels=8, upscale=3)
  model = torch_span_model(seed=5, **arch)
  x = images((2, 13, 11, 3), seed=1)
  weights = images((2, 39, 33, 3), seed=2) - 0.5  # so that every output pixel counts differently

  x_torch = to_nchw(x).requires_grad_(True)
  model.train()
  (model(x_torch) * to_nchw(weights)).sum().backward()
  torch_grads = flax_params({k: p.grad for k, p in model.named_parameters()})

  def loss(params, x):
    return jnp.sum(SPAN(**arch).apply({"params": params}, x) * weights)
  param_grads, x_grad = jax.grad(loss, argnums=(0, 1))(flax_params(model.state_dict()), x)
  assert_close(x_grad, to_nhwc(x_torch.grad), "input gradient", relative=True)
  assert jax.tree.structure(param_grads) == jax.tree.structure(torch_grads)
  for (path, ours), theirs in zip(jax.tree_util.tree_leaves_with_path(param_grads),
                                  jax.tree.leaves(torch_grads)):
    assert_close(ours, theirs, f"gradient {jax.tree_util.keystr(path)}", relative=True)


@pytest.mark.parametrize("deploy", [False, True])
def test_parameter_paths_are_the_state_dict_keys(deploy):
  model = torch_span_model(feature_channels=4, upscale=2, norm=False)
  keys = [k for k in model.state_dict() if in_form(k, deploy)]
  variables = SPAN(feature_channels=4, upscale=2, norm=False, deploy=deploy).init(
      jax.random.key(0), images((1, 5, 5, 3)))
  paths = traverse_util.flatten_dict(variables["params"])
  names = {".".join(path[:-1]) + (".weight" if path[-1] == "kernel" else ".bias") for path in paths}
  assert names == set(keys)
  for path, leaf in paths.items():
    assert leaf.dtype == jnp.float32, path


def test_parameter_count_at_48_features_x4():
  def count(deploy):
    shapes = jax.eval_shape(SPAN(deploy=deploy).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))
  with torch.device("meta"):  # shapes only, nothing allocated
    named = dict(torch_span.SPAN().named_parameters())
  assert sum(p.numel() for p in named.values()) == X4_48_STATE_DICT_PARAMS
  torch_branch = sum(p.numel() for k, p in named.items() if "eval_conv" not in k)
  torch_folded = sum(p.numel() for k, p in named.items() if not is_branch_key(k))
  assert count(False) == torch_branch == X4_48_BRANCH_PARAMS
  assert count(True) == torch_folded == X4_48_FOLDED_PARAMS


def test_fold_recomputes_a_stored_eval_conv():
  """spandrel never trusts a state dict's eval_conv; fold drops it and folds the branches."""
  params = SPAN(feature_channels=4, upscale=1).init(jax.random.key(0), images((1, 4, 4, 3)))
  stale = dict(params["params"])
  stale["conv_1"] = dict(stale["conv_1"], eval_conv={"kernel": jnp.zeros((3, 3, 3, 4)),
                                                     "bias": jnp.ones(4)})
  folded = span.fold(stale)
  assert set(folded["conv_1"]) == {"eval_conv"}
  assert float(jnp.abs(folded["conv_1"]["eval_conv"]["bias"] - 1).max()) > 0
  expected = span.fold(params)["params"]["conv_1"]
  jax.tree.map(np.testing.assert_array_equal, folded["conv_1"], expected)
  np.testing.assert_array_equal(folded["conv_cat"]["kernel"],
                                params["params"]["conv_cat"]["kernel"])


def test_fresh_parameters_start_as_torch_defaults():
  """Every kernel and bias lies in torch's default +-1/sqrt(fan_in) and nearly fills it."""
  variables = SPAN(feature_channels=8, upscale=2).init(jax.random.key(3), images((1, 5, 5, 3)))
  for module_path, leaves in traverse_util.flatten_dict(variables["params"], is_leaf=lambda p, x:
                                                        "kernel" in x).items():
    bound = 1 / math.sqrt(math.prod(leaves["kernel"].shape[:-1]))
    for name, leaf in leaves.items():
      assert float(jnp.abs(leaf).max()) <= bound, (module_path, name)
    assert float(jnp.abs(leaves["kernel"]).max()) > 0.5 * bound, module_path


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_pixel_shuffle_matches_torch(factor):
  x = images((2, 3, 5, 4 * factor * factor))
  expected = to_nhwc(torch.nn.functional.pixel_shuffle(to_nchw(x), factor))
  np.testing.assert_array_equal(pixel_shuffle(jnp.asarray(x), factor), expected)


@pytest.mark.parametrize("deploy", [False, True])
def test_receptive_radius(deploy):
  """The input pixels that reach an output pixel lie exactly receptive_radius() away at most."""
  radius, upscale = span.receptive_radius(), 2
  size = 2 * radius + 5
  model = SPAN(feature_channels=4, upscale=upscale, norm=False, deploy=deploy)
  x = images((1, size, size, 3), seed=4)
  params = model.init(jax.random.key(1), x)
  centre = size // 2
  pixel = lambda x: model.apply(params, x)[0, centre * upscale + 1, centre * upscale, 0]
  reach = np.argwhere(np.abs(np.asarray(jax.grad(pixel)(x)[0])).sum(-1) > 0) - centre
  assert np.abs(reach).max() == radius


def test_bfloat16_stays_close_to_float32():
  model = SPAN(feature_channels=8, upscale=2)
  x = images((1, 13, 11, 3))
  params = model.init(jax.random.key(2), x)
  reference = np.asarray(model.apply(params, x))
  out = model.clone(dtype=jnp.bfloat16).apply(params, x)
  assert out.dtype == jnp.bfloat16
  assert jax.tree.leaves(params)[0].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out, np.float32), reference,
                             atol=2e-2 * np.abs(reference).max())


def test_refuses_bad_shapes():
  x = images((1, 4, 4, 3))
  with pytest.raises(ValueError, match="upscale must be a positive integer"):
    SPAN(feature_channels=4, upscale=0).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="expects NHWC input with 1 channels"):
    SPAN(num_in_ch=1, feature_channels=4, norm=False).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="rgb_mean has 3 values for 1 input channels"):
    SPAN(num_in_ch=1, feature_channels=4).init(jax.random.key(0), x[..., :1])
