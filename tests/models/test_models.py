"""The Flax models compute what the PyTorch reference networks compute, given the same weights.

Each test builds a network of reference/torch_models.py with random weights, imports them with
esrgan_jax.convert and compares outputs (and updated statistics) on float32 inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from esrgan_jax.models import RRDBNet, UNetDiscriminatorSN, VGG19Features, VGGStyleDiscriminator
from esrgan_jax.models.discriminators import BatchNorm
from esrgan_jax.models.rrdbnet import DENSE_BLOCKS, resolve_dense_block
from esrgan_jax.weights import discriminators, generator, vgg19
from reference import torch_models as ref

TOLERANCE = 1e-4
DEFAULT_X4_PARAM_COUNT = 16_697_987  # BasicSR's RRDBNet(3, 3, scale=4), 64 features, 23 blocks


RELATIVE_TOLERANCE = 1e-3  # of the largest reference value, so that small outputs still count


def assert_matches(actual, expected, what):
  """|actual - expected| <= 1e-4 everywhere, and small next to the reference's own scale."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
  error, scale = np.abs(actual - expected).max(), np.abs(expected).max()
  assert error <= TOLERANCE, f"{what}: max abs difference {error:.3g} > {TOLERANCE}"
  assert error <= RELATIVE_TOLERANCE * scale, f"{what}: difference {error:.3g}, output {scale:.3g}"


def images(shape, seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def torch_call(module, x_nhwc):
  with torch.no_grad():
    return ref.to_nhwc(module(ref.to_nchw(x_nhwc)))


@pytest.mark.parametrize("dense_block", DENSE_BLOCKS)
@pytest.mark.parametrize("scale, num_feat, num_block, num_grow_ch", [
    (1, 8, 1, 4),
    (2, 16, 2, 8),
    (4, 8, 2, 4),
])
def test_rrdbnet_matches_torch(scale, num_feat, num_block, num_grow_ch, dense_block):
  arch = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=num_feat, num_block=num_block,
              num_grow_ch=num_grow_ch)
  torch_model = ref.seed_all_parameters(ref.RRDBNet(**arch), seed=scale).eval()
  params, inferred = generator.params_from_torch(ref.numpy_state_dict(torch_model))
  assert inferred == arch
  x = images((2, 16, 12, 3))  # not square, so that H/W mix-ups show
  out = jax.jit(RRDBNet(**arch, dense_block=dense_block).apply)({"params": params}, x)
  assert out.shape == (2, 16 * scale, 12 * scale, 3)
  assert_matches(out, torch_call(torch_model, x), f"RRDBNet x{scale} ({dense_block})")


def test_dense_block_arrangements_share_parameters_and_gradients():
  x = images((2, 8, 8, 3))
  models = {name: RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, dense_block=name)
            for name in DENSE_BLOCKS}
  params = {name: model.init(jax.random.key(1), x) for name, model in models.items()}
  assert jax.tree.structure(params["concat"]) == jax.tree.structure(params["fused"])
  jax.tree.map(np.testing.assert_array_equal, params["concat"], params["fused"])

  def grads(name):
    loss = lambda p, x: jnp.sum(models[name].apply(p, x) ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params["concat"], x)
  concat_grads, fused_grads = grads("concat"), grads("fused")
  for (path, ours), theirs in zip(jax.tree_util.tree_leaves_with_path(fused_grads),
                                  jax.tree.leaves(concat_grads)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6,
                               err_msg=f"gradient {jax.tree_util.keystr(path)}")


def test_fused_dense_block_in_bfloat16_stays_close_to_float32():
  x = images((1, 8, 8, 3))
  model = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, dense_block="fused")
  params = model.init(jax.random.key(2), x)
  reference = model.apply(params, x)
  out = model.clone(dtype=jnp.bfloat16).apply(params, x)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), reference,
                             atol=2e-2 * np.abs(reference).max())


def test_dense_block_choice():
  assert resolve_dense_block("auto") in DENSE_BLOCKS
  with pytest.raises(ValueError, match="model.dense_block must be one of"):
    RRDBNet(num_feat=8, num_block=1, dense_block="sparse").init(jax.random.key(0),
                                                                images((1, 4, 4, 3)))


def test_rrdbnet_default_parameter_count():
  shapes = jax.eval_shape(RRDBNet().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32))
  flax_count = sum(leaf.size for leaf in jax.tree.leaves(shapes))
  with torch.device("meta"):  # shapes only, nothing allocated
    torch_count = sum(p.numel() for p in ref.RRDBNet().parameters())
  assert flax_count == torch_count == DEFAULT_X4_PARAM_COUNT


def _vgg_discriminator_variables(torch_model):
  variables, _ = discriminators.vgg_discriminator_variables_from_torch(
      ref.numpy_state_dict(torch_model))
  return variables


@pytest.mark.parametrize("input_size", [128, 256])
def test_vgg_discriminator_matches_torch_in_train_and_eval_mode(input_size):
  torch_model = ref.seed_all_parameters(ref.VGGStyleDiscriminator(3, 4, input_size), gain=1.4)
  variables = _vgg_discriminator_variables(torch_model)
  flax_model = VGGStyleDiscriminator(num_in_ch=3, num_feat=4, input_size=input_size)
  apply_train = jax.jit(lambda v, x: flax_model.apply(v, x, train=True, mutable=["batch_stats"]))

  # Train mode: batch statistics normalise, and the running statistics move as torch's do.
  torch_model.train()
  for step in range(2):
    x = images((3, input_size, input_size, 3), seed=step)
    out, updates = apply_train(variables, x)
    assert_matches(out, torch_call(torch_model, x), f"train step {step}")
    variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    torch_stats = _vgg_discriminator_variables(torch_model)["batch_stats"]
    for (path, ours), theirs in zip(jax.tree_util.tree_leaves_with_path(variables["batch_stats"]),
                                    jax.tree.leaves(torch_stats)):
      np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5,
                                 err_msg=f"running statistic {jax.tree_util.keystr(path)}")

  # Eval mode: running statistics normalise, nothing changes.
  torch_model.eval()
  x = images((2, input_size, input_size, 3), seed=7)
  out = jax.jit(lambda v, x: flax_model.apply(v, x, train=False))(variables, x)
  assert out.shape == (2, 1)
  assert_matches(out, torch_call(torch_model, x), "eval")


def test_batch_norm_keeps_torch_unbiased_running_variance():
  # Two values per channel: the unbiased variance is twice the biased one, so a mix-up shows.
  x = images((2, 1, 1, 5)) * 4.0
  torch_bn = torch.nn.BatchNorm2d(5).train()
  with torch.no_grad():
    expected = ref.to_nhwc(torch_bn(ref.to_nchw(x)))
  variables = BatchNorm().init(jax.random.key(0), x)
  out, updates = BatchNorm().apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(out, expected, atol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["var"], torch_bn.running_var.numpy(),
                             rtol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], torch_bn.running_mean.numpy(),
                             rtol=1e-6)


def test_unet_discriminator_matches_torch():
  torch_model = ref.seed_all_parameters(ref.UNetDiscriminatorSN(3, 8), seed=3, gain=1.4)
  variables, arch = discriminators.unet_discriminator_variables_from_torch(
      ref.numpy_state_dict(torch_model))
  flax_model = UNetDiscriminatorSN(**arch)
  apply = jax.jit(lambda v, x, train: flax_model.apply(v, x, train=train, mutable=["batch_stats"]),
                  static_argnums=2)
  x = images((2, 32, 24, 3))

  # Train mode: one power-iteration step from the stored (u, v), then the normalised conv.
  torch_model.train()
  out, updates = apply(variables, x, True)
  assert out.shape == (2, 32, 24, 1)
  assert_matches(out, torch_call(torch_model, x), "train")
  torch_stats, _ = discriminators.unet_discriminator_variables_from_torch(
      ref.numpy_state_dict(torch_model))
  for name in (f"conv{i}" for i in range(1, 9)):
    for vector in ("u", "v"):
      np.testing.assert_allclose(updates["batch_stats"][name][vector],
                                 torch_stats["batch_stats"][name][vector], atol=1e-5,
                                 err_msg=f"{name}/{vector} after one power iteration")

  # Eval mode uses the stored vectors unchanged. A few more torch steps first converge them, so
  # sigma is the real spectral norm and the output stays at a comparable scale.
  for _ in range(10):
    torch_call(torch_model, x)
  torch_model.eval()
  variables, _ = discriminators.unet_discriminator_variables_from_torch(
      ref.numpy_state_dict(torch_model))
  out, updates = apply(variables, x, False)
  assert_matches(out, torch_call(torch_model, x), "eval")
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


def test_vgg19_features_match_torch():
  layers = ("conv1_1", "conv2_2", "conv3_4", "conv5_4")
  # gain 1.4 ~ sqrt(2) keeps activations O(1) through sixteen ReLU convs.
  features = ref.seed_all_parameters(ref.vgg19_features(), seed=1, gain=1.4)
  state = {f"features.{k}": v for k, v in ref.numpy_state_dict(features).items()}
  params = vgg19.vgg19_params_from_torch(state)
  extractor = ref.VGG19FeatureExtractor(layers, features=features).eval()
  x = images((1, 32, 48, 3))
  with torch.no_grad():
    expected = {k: ref.to_nhwc(v) for k, v in extractor(ref.to_nchw(x)).items()}
  out = jax.jit(VGG19Features(layers=layers).apply)({"params": params}, x)
  assert sorted(out) == sorted(layers)
  for layer in layers:
    assert_matches(out[layer], expected[layer], layer)
  # Pre-ReLU: features have negative values, which a post-ReLU tap would not.
  assert (np.asarray(out["conv5_4"]) < 0).any()


def test_fresh_biases_start_as_torch_defaults_and_dense_block_biases_at_zero():
  x = images((1, 128, 128, 3))
  models = [RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, dense_block="concat"),
            VGGStyleDiscriminator(num_feat=8), UNetDiscriminatorSN(num_feat=8)]
  for model in models:
    small = not isinstance(model, VGGStyleDiscriminator)  # which takes 128x128 only
    params = model.init(jax.random.key(3), x[:, :32, :32] if small else x)
    for path, bias in jax.tree_util.tree_leaves_with_path(params["params"]):
      if path[-1].key != "bias":
        continue
      where = f"{type(model).__name__}{jax.tree_util.keystr(path)}"
      if any(str(getattr(p, "key", "")).startswith("rdb") for p in path):
        assert not np.any(bias), f"{where}: BasicSR's default_init_weights zeroes it"
        continue
      layer = params["params"]
      for p in path[:-1]:
        layer = layer[p.key]
      if "kernel" not in layer:  # BatchNorm's shift, zero in torch too
        assert not np.any(bias), where
        continue
      fan_in = int(np.prod(layer["kernel"].shape[:-1]))
      with torch.no_grad():  # torch's own default: a wide layer shows the bound it draws within
        torch_bound = float(torch.nn.Linear(fan_in, 4096).bias.abs().max())
      assert np.abs(bias).max() <= torch_bound * 1.01, where
      if bias.size >= 8:
        assert np.abs(bias).max() >= 0.3 * torch_bound, where


@pytest.mark.parametrize("dense_block", DENSE_BLOCKS)
def test_remat_blocks_changes_memory_not_results(dense_block):
  x = images((1, 8, 8, 3))
  plain = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, dense_block=dense_block)
  params = plain.init(jax.random.key(4), x)
  remat = plain.clone(remat_blocks=True)
  assert jax.tree.structure(remat.init(jax.random.key(4), x)) == jax.tree.structure(params)

  def convs_in_backward_pass(model):
    grad_fn = jax.grad(lambda p: jnp.sum(model.apply(p, x)))
    return str(jax.make_jaxpr(grad_fn)(params)).count("conv_general_dilated")
  # The RRDBs' forward convolutions run again in the backward pass instead of being stored.
  assert convs_in_backward_pass(remat) > convs_in_backward_pass(plain)

  def value_and_grad(model):
    loss = lambda p: jnp.sum(model.apply(p, x) ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)
  (loss, grads), (remat_loss, remat_grads) = value_and_grad(plain), value_and_grad(remat)
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               remat_grads, grads)
