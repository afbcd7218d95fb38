"""SRVGGNetCompact computes what Real-ESRGAN's srvgg_arch.py computes, forwards and backwards.

Each comparison builds reference/torch_srvgg.py's network with random weights, copies them into
the Flax tree (`flax_params`, a stand-in for the importer in esrgan_jax/weights/) and compares the
output and the gradients of a weighted sum of it w.r.t. the input and every parameter.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from esrgan_jax.models.shuffle import pixel_shuffle, pixel_unshuffle
from esrgan_jax.models.srvgg import ACT_TYPES, PRELU_INIT, SRVGGNetCompact, receptive_radius
from reference import torch_models as ref
from reference import torch_srvgg

TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-3  # of the largest reference value, so that small values still count
ANIMEVIDEO_V3_PARAMS = 621_424  # realesr-animevideov3: 64 features, 16 convs, x4
GENERAL_X4_V3_PARAMS = 1_213_296  # realesr-general-x4v3: 64 features, 32 convs, x4
TINY = dict(num_feat=8, num_conv=2)


def flax_params(state_dict: dict) -> dict:
  """`body.{i}.weight/bias` numpy arrays -> {body_i: {kernel (HWIO), bias} or {weight}}."""
  params = {}
  for key, value in state_dict.items():
    _, index, kind = key.split(".")
    layer = params.setdefault(f"body_{index}", {})
    if value.ndim == 4:
      layer["kernel"] = jnp.asarray(value.transpose(2, 3, 1, 0))
    elif kind == "bias":
      layer["bias"] = jnp.asarray(value)
    else:  # a PReLU's slopes
      layer["weight"] = jnp.asarray(value)
  return params


def torch_model(arch: dict, seed: int) -> torch_srvgg.SRVGGNetCompact:
  """Random weights on every path; PReLU slopes near their 0.25 start, so the kink shows."""
  model = ref.seed_all_parameters(torch_srvgg.SRVGGNetCompact(**arch), seed, gain=math.sqrt(2))
  generator = torch.Generator().manual_seed(seed + 100)
  with torch.no_grad():
    for layer in model.body:
      if isinstance(layer, torch.nn.PReLU):
        layer.weight.copy_(PRELU_INIT + 0.1 * torch.randn(layer.weight.shape, generator=generator))
  return model


def assert_matches(actual, expected, what):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
  error, scale = np.abs(actual - expected).max(), np.abs(expected).max()
  assert error <= TOLERANCE, f"{what}: max abs difference {error:.3g} > {TOLERANCE}"
  assert error <= RELATIVE_TOLERANCE * scale, f"{what}: difference {error:.3g}, values {scale:.3g}"


def random_array(shape, seed):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def torch_output_and_grads(model, x, weights):
  """Output (NHWC) and the gradients of sum(output * weights) w.r.t. x (NHWC) and the params."""
  model.zero_grad()
  x_torch = ref.to_nchw(x).requires_grad_(True)
  out = model(x_torch)
  (out * ref.to_nchw(weights)).sum().backward()
  param_grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
  return ref.to_nhwc(out), ref.to_nhwc(x_torch.grad), flax_params(param_grads)


@pytest.mark.parametrize("act_type", ACT_TYPES)
@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
def test_matches_torch_forwards_and_backwards(upscale, act_type):
  arch = dict(TINY, upscale=upscale, act_type=act_type)
  model = torch_model(arch, seed=upscale)
  params = flax_params(ref.numpy_state_dict(model))
  x = random_array((2, 13, 10, 3), seed=upscale)  # odd and not square, so that H/W mix-ups show
  weights = random_array((2, 13 * upscale, 10 * upscale, 3), seed=10 + upscale) - 0.5
  flax_model = SRVGGNetCompact(**arch)

  def loss(params, x):
    out = flax_model.apply({"params": params}, x)
    return jnp.sum(out * weights), out
  (_, out), (param_grads, x_grad) = jax.jit(
      jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)

  what = f"x{upscale} {act_type}"
  torch_out, torch_x_grad, torch_param_grads = torch_output_and_grads(model, x, weights)
  assert_matches(out, torch_out, f"{what} output")
  assert_matches(x_grad, torch_x_grad, f"{what} d/dinput")
  assert jax.tree.structure(param_grads) == jax.tree.structure(torch_param_grads)
  for path, grad in jax.tree_util.tree_leaves_with_path(param_grads):
    expected = torch_param_grads
    for entry in path:
      expected = expected[entry.key]
    assert_matches(grad, expected, f"{what} d/d{jax.tree_util.keystr(path)}")


def test_gray_input_is_added_to_every_output_channel():
  arch = dict(TINY, num_in_ch=1, num_out_ch=3, upscale=2)
  model = torch_model(arch, seed=7)
  x = random_array((1, 9, 11, 1), seed=7)
  out = SRVGGNetCompact(**arch).apply({"params": flax_params(ref.numpy_state_dict(model))}, x)
  with torch.no_grad():
    assert_matches(out, ref.to_nhwc(model(ref.to_nchw(x))), "gray in, RGB out")


def test_parameter_names_and_counts_of_the_released_models():
  for num_conv, expected in ((16, ANIMEVIDEO_V3_PARAMS), (32, GENERAL_X4_V3_PARAMS)):
    shapes = jax.eval_shape(SRVGGNetCompact(num_conv=num_conv).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))["params"]
    assert sum(leaf.size for leaf in jax.tree.leaves(shapes)) == expected
    with torch.device("meta"):  # shapes only, nothing allocated
      torch_keys = torch_srvgg.SRVGGNetCompact(num_conv=num_conv).state_dict()
    assert sum(v.numel() for v in torch_keys.values()) == expected
    flax_keys = {f"{layer.replace('_', '.')}.{'weight' if leaf == 'kernel' else leaf}"
                 for layer, leaves in shapes.items() for leaf in leaves}
    assert flax_keys == set(torch_keys)
    assert shapes[f"body_{2 * num_conv + 2}"]["kernel"].shape == (3, 3, 64, 48)


def test_fresh_parameters_start_as_pytorch_s():
  params = SRVGGNetCompact(**TINY).init(jax.random.key(0), random_array((1, 6, 6, 3), 0))["params"]
  for index in (1, 3, 5):
    np.testing.assert_array_equal(params[f"body_{index}"]["weight"], np.full(8, PRELU_INIT))
  for index, fan_in in ((0, 27), (2, 72), (6, 72)):
    assert np.abs(params[f"body_{index}"]["bias"]).max() <= 1 / math.sqrt(fan_in)
    # kaiming_uniform(a=sqrt(5)): uniform in +-1/sqrt(fan_in) as well.
    kernel = params[f"body_{index}"]["kernel"]
    assert np.abs(kernel).max() <= 1 / math.sqrt(fan_in)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  relu = SRVGGNetCompact(**TINY, act_type="relu").init(jax.random.key(0),
                                                       random_array((1, 6, 6, 3), 0))["params"]
  assert sorted(relu) == ["body_0", "body_2", "body_4", "body_6"]


@pytest.mark.parametrize("upscale", [1, 3])
def test_receptive_radius_is_exact(upscale):
  arch = dict(TINY, upscale=upscale)
  radius = receptive_radius(TINY["num_conv"], upscale)
  assert radius == TINY["num_conv"] + 2
  size = 2 * radius + 5
  x = random_array((1, size, size, 3), seed=3)
  model = SRVGGNetCompact(**arch)
  params = model.init(jax.random.key(3), x)
  y, col = size // 2 * upscale + upscale - 1, size // 2 * upscale  # one HR pixel, LR (c, c)
  pixel = lambda x: jnp.sum(model.apply(params, x)[0, y, col])
  reach = np.abs(np.asarray(jax.grad(pixel)(x))).sum(axis=(0, 3)) > 0
  rows, cols = np.nonzero(reach)
  center = size // 2
  assert (rows.min(), rows.max()) == (center - radius, center + radius)
  assert (cols.min(), cols.max()) == (center - radius, center + radius)


def test_pixel_shuffle_undoes_pixel_unshuffle():
  x = random_array((2, 6, 9, 4), seed=5)
  np.testing.assert_array_equal(pixel_shuffle(pixel_unshuffle(x, 3), 3), x)


def test_bfloat16_stays_close_to_float32():
  x = random_array((1, 12, 10, 3), seed=6)
  model = SRVGGNetCompact(**TINY)
  params = model.init(jax.random.key(6), x)
  reference = model.apply(params, x)
  out = model.clone(dtype=jnp.bfloat16).apply(params, x)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), reference,
                             atol=2e-2 * np.abs(reference).max())


@pytest.mark.parametrize("arch, message", [
    (dict(act_type="gelu"), "act_type must be one of"),
    (dict(num_in_ch=3, num_out_ch=1), "num_in_ch must be 1 or num_out_ch"),
    (dict(upscale=0), "upscale >= 1"),
])
def test_refuses_what_srvgg_arch_cannot_compute(arch, message):
  with pytest.raises(ValueError, match=message):
    SRVGGNetCompact(**TINY, **arch).init(jax.random.key(0), random_array((1, 4, 4, 3), 0))


def test_refuses_input_with_the_wrong_channels():
  with pytest.raises(ValueError, match="NHWC input with 3 channels"):
    SRVGGNetCompact(**TINY).init(jax.random.key(0), random_array((1, 4, 4, 1), 0))
