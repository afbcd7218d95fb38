"""The generator's and discriminators' PyTorch key layouts <-> Flax trees (esrgan_jax/weights/):
every layout read, exported bit-exactly, its architecture inferred, and bad keys named."""

import jax
import numpy as np
import pytest
import torch

from esrgan_jax.models import RRDBNet
from esrgan_jax.weights import discriminators, generator
from esrgan_jax.weights.store import CheckpointError
from reference import torch_models as ref
from tests.tiny_generator import random_params

TOLERANCE = 1e-4
ARCH = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)


def build_generator(layout, arch):
  """The reference generator whose state dict uses `layout`'s key names."""
  if layout == generator.BASICSR:
    return ref.RRDBNet(**arch)
  cls = ref.ESRGANRRDBNet if layout == generator.ESRGAN else ref.ESRGANOriginalRRDBNet
  return cls(arch["num_in_ch"], arch["num_out_ch"], arch["num_feat"], arch["num_block"],
             arch["num_grow_ch"])


def torch_generator(layout, seed=0):
  """A small reference generator (ARCH) with random weights."""
  return ref.seed_all_parameters(build_generator(layout, ARCH), seed=seed).eval()


def images(shape, seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def assert_generator_matches(params, arch, torch_model):
  x = images((1, 12, 8, arch["num_in_ch"]))
  out = np.asarray(RRDBNet(**arch).apply({"params": params}, x))
  with torch.no_grad():
    expected = ref.to_nhwc(torch_model(ref.to_nchw(x)))
  assert out.shape == expected.shape
  np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE)


def test_weights_key_prefers_params_ema_and_can_pick_params(tmp_path):
  plain = torch_generator(generator.BASICSR, seed=1)
  ema = torch_generator(generator.BASICSR, seed=2)
  path = tmp_path / "both.pth"
  # DataParallel's `module.` prefix is dropped too.
  torch.save({"params": {f"module.{k}": v for k, v in plain.state_dict().items()},
              "params_ema": ema.state_dict()}, path)

  def first_kernel(params):
    return params["conv_first"]["kernel"]

  def expected_kernel(model):
    return model.conv_first.weight.detach().numpy().transpose(2, 3, 1, 0)

  params, _ = generator.load_generator_from_torch(path)
  np.testing.assert_array_equal(first_kernel(params), expected_kernel(ema))
  params, _ = generator.load_generator_from_torch(path, weights_key="params")
  np.testing.assert_array_equal(first_kernel(params), expected_kernel(plain))

  torch.save({"params": plain.state_dict()}, tmp_path / "plain.pth")
  with pytest.raises(CheckpointError, match=r"plain.pth: has no 'params_ema' entry"):
    generator.load_generator_from_torch(tmp_path / "plain.pth", weights_key="params_ema")


def test_flax_to_torch_to_flax_is_bit_exact():
  arch = {**ARCH, "scale": 2}
  # Random values in the module's own tree (eval_shape: no slow random-init compile needed).
  shapes = jax.eval_shape(RRDBNet(**arch).init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 8, 8, 3), np.float32))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes)
  state = generator.params_to_torch(params, arch)

  back, back_arch = generator.params_from_torch(state)
  assert back_arch == arch
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)

  # The exported names and layouts are BasicSR's: strict loading works and outputs agree.
  torch_model = ref.RRDBNet(**arch).eval()
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  assert_generator_matches(params, arch, torch_model)


@pytest.mark.parametrize("layout, arch", [
    (generator.BASICSR, dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23,
                           num_grow_ch=32)),
    (generator.BASICSR, dict(ARCH, scale=2)),
    (generator.BASICSR, dict(ARCH, scale=1, num_block=1)),
    (generator.BASICSR, dict(ARCH, num_in_ch=1, num_out_ch=1, scale=2, num_feat=16)),
    (generator.ESRGAN, dict(ARCH, num_grow_ch=8)),
    (generator.ESRGAN_ORIGINAL, dict(ARCH, num_block=3)),
])
def test_infers_architecture_from_state_dict(layout, arch):
  with torch.device("meta"):  # shapes are all that inference needs
    state = build_generator(layout, arch).state_dict()
  assert generator.detect_layout(state) == layout
  assert generator.infer_arch(state) == arch


def test_scale_flag_resolves_ambiguous_channels():
  # conv_first with 4 input channels and 1 output: a 1-channel x2 model or a 4-channel x4 one.
  with torch.device("meta"):
    state = ref.RRDBNet(num_in_ch=4, num_out_ch=1, scale=4, num_feat=8, num_block=1,
                        num_grow_ch=4).state_dict()
  assert generator.infer_arch(state)["scale"] == 2
  arch = generator.infer_arch(state, scale=4)
  assert (arch["num_in_ch"], arch["scale"]) == (4, 4)
  with pytest.raises(CheckpointError, match="does not fit scale x1"):
    generator.infer_arch(state, scale=1)


@pytest.mark.parametrize("layout", [generator.ESRGAN, generator.ESRGAN_ORIGINAL])
@pytest.mark.parametrize("scale", [2, 1])
def test_esrgan_layouts_fold_x2_and_x1_as_basicsr_does(layout, scale):
  # An x2 / x1 export in ESRGAN's names (spandrel's own state dicts too) has conv_first take 4x /
  # 16x the channels; it used to read back as a 12- / 48-channel x4 net.
  arch = dict(ARCH, scale=scale)
  params = random_params(RRDBNet(**arch))
  state = generator.params_to_torch(params, arch, layout)
  back, back_arch = generator.params_from_torch(state)
  assert back_arch == arch
  jax.tree.map(np.testing.assert_array_equal, back, params)
  # ESRGAN's own x4 files keep reading as x4 whatever their channels.
  with torch.device("meta"):
    gray_in = build_generator(layout, dict(ARCH, num_in_ch=1)).state_dict()
  assert generator.infer_arch(gray_in) == dict(ARCH, num_in_ch=1)


def test_missing_unexpected_and_misshapen_keys_are_named():
  state = ref.numpy_state_dict(torch_generator(generator.BASICSR))
  state.pop("conv_hr.weight")
  state["conv_extra.weight"] = np.zeros((8, 8, 3, 3), np.float32)
  with pytest.raises(CheckpointError) as error:
    generator.params_from_torch(state, "g.pth")
  message = str(error.value)
  assert message.startswith("g.pth: ") and "\n" not in message
  assert "missing key(s) conv_hr.weight" in message
  assert "unexpected key(s) conv_extra.weight" in message

  state = ref.numpy_state_dict(torch_generator(generator.BASICSR))
  state["body.1.rdb2.conv3.weight"] = state["body.1.rdb2.conv3.weight"][:, :-1]
  with pytest.raises(CheckpointError, match=r"g.pth: body.1.rdb2.conv3.weight has shape"):
    generator.params_from_torch(state, "g.pth")


def test_discriminator_import_checks_keys():
  state = ref.numpy_state_dict(ref.UNetDiscriminatorSN(3, 4))
  state.pop("conv3.weight_v")
  with pytest.raises(CheckpointError, match="missing key.*conv3.weight_v"):
    discriminators.unet_discriminator_variables_from_torch(state, "d.pth")
  state = ref.numpy_state_dict(ref.VGGStyleDiscriminator(3, 4, 256))
  variables, arch = discriminators.vgg_discriminator_variables_from_torch(state)
  assert arch == {"num_in_ch": 3, "num_feat": 4, "input_size": 256}
  assert variables["params"]["linear1"]["kernel"].shape == (4 * 8 * 16, 100)
  with pytest.raises(CheckpointError, match="not a VGGStyleDiscriminator"):
    discriminators.vgg_discriminator_variables_from_torch(
        ref.numpy_state_dict(ref.RRDBNet(num_block=1)))
