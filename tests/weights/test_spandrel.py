"""Generator files both ways through spandrel 0.4.2, the loader of ComfyUI, chaiNNer and
AUTOMATIC1111: every `convert --export` file loads there as the right architecture, scale and
channels and computes what the JAX model computes; spandrel's own networks import and agree.

What spandrel cannot load, these tests pin down too: it builds every ESRGAN with growth 32. It
also builds every Compact with PReLUs and finds one by its `body.1.weight` slopes, which a ReLU /
LeakyReLU file from Real-ESRGAN lacks; our exports write those nets' slopes (0 / 0.1), so they load.
"""

import math
import sys

import numpy as np
import pytest
import safetensors.torch
import torch

from esrgan_jax import convert
from esrgan_jax.inference import tiling
from esrgan_jax.weights import generator
from reference import torch_models as ref
from tests.spandrel_loader import STAND_IN_DOC, import_spandrel
from tests.tiny_generator import random_params

spandrel = import_spandrel()
TOLERANCE = 1e-4
# Odd on both axes: x2 / x1 RRDBNets pad it (to 20 x 24 both in spandrel and in tiling.py).
IMAGE_SHAPE = (1, 19, 23, 3)
GROWTH = 32  # spandrel's ESRGAN has no other


def rrdbnet(scale):
  return dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8, num_block=2,
              num_grow_ch=GROWTH)


def compact(scale, act_type):
  return dict(arch="srvgg_compact", num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8,
              num_conv=2, act_type=act_type)


def span(scale, features, norm):
  return dict(arch="span", num_in_ch=3, num_out_ch=3, scale=scale, feature_channels=features,
              norm=norm)


# name -> (architecture record, what spandrel calls it: (id, name)).
ESRGAN, COMPACT, SPAN = ("ESRGAN", "ESRGAN"), ("Compact", "RealESRGAN Compact"), ("SPAN", "SPAN")
GENERATORS = {
    "rrdbnet_x4": (rrdbnet(4), ESRGAN),
    "rrdbnet_x2": (rrdbnet(2), ESRGAN),
    "rrdbnet_x1": (rrdbnet(1), ESRGAN),
    "compact_prelu_x4": (compact(4, "prelu"), COMPACT),
    "compact_relu_x2": (compact(2, "relu"), COMPACT),
    "compact_leakyrelu_x2": (compact(2, "leakyrelu"), COMPACT),
    "span48_x4": (span(4, 48, True), SPAN),
    "span52_x2": (span(2, 52, False), SPAN),
}
# Every RRDBNet layout spandrel reads (all of generator.LAYOUTS) at every scale.
EXPORTS = [(name, layout) for name in GENERATORS
           for layout in (generator.LAYOUTS if name.startswith("rrdbnet") else (None,))]


def images(shape=IMAGE_SHAPE, seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def jax_output(arch, params, x):
  """What the upscaler computes: SPAN folded, x2 / x1 RRDBNets' input reflect-padded to their
  unshuffle factor and the output cropped back."""
  model, params = generator.inference_model_and_params(arch, params)
  apply = lambda batch: np.asarray(model.apply({"params": params}, batch))
  return tiling.upscale_tiled(apply, x[0], arch["scale"],
                              multiple=tiling.generator_multiple(arch))[None]


def network_output(descriptor, x):
  """The loaded network's own output in eval mode (no clamp; x2 / x1 RRDBNets pad inside)."""
  model = descriptor.model.eval()
  with torch.no_grad():
    return ref.to_nhwc(model(ref.to_nchw(x)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """name -> (checkpoint dir, record, the JAX output on `images()`), each made once."""
  made = {}

  def get(name):
    if name not in made:
      arch = GENERATORS[name][0]
      params = random_params(generator.generator_from_arch(arch), seed=len(made))
      directory = tmp_path_factory.mktemp("ckpt") / name
      generator.save_generator(directory, params, arch)
      made[name] = directory, arch, jax_output(arch, params, images())
    return made[name]
  return get


def export(checkpoint, out, *flags):
  assert convert.main(["--export", str(checkpoint), str(out), *flags]) == 0
  return out


def assert_descriptor(descriptor, arch, expected):
  assert (descriptor.architecture.id, descriptor.architecture.name) == expected
  assert descriptor.scale == arch["scale"]
  assert descriptor.input_channels == arch["num_in_ch"]
  assert descriptor.output_channels == arch["num_out_ch"]
  assert descriptor.purpose == ("Restoration" if arch["scale"] == 1 else "SR")


def test_spandrel_got_the_stand_ins_and_nobody_else_sees_them():
  lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
  with pytest.raises(RuntimeError, match="is a stand-in in these tests"):
    lama.rotate(None, None)
  left = [name for name, module in sys.modules.items()
          if name.startswith("torchvision") and getattr(module, "__doc__", None) == STAND_IN_DOC]
  assert not left
  assert import_spandrel() is spandrel


# ------------------------------------------------------------------------------------------------
# esrgan_jax -> spandrel.


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name, layout", EXPORTS, ids=lambda v: v or "")
def test_export_loads_in_spandrel_and_computes_the_same(checkpoints, tmp_path, name, layout,
                                                        suffix):
  directory, arch, expected = checkpoints(name)
  flags = ["--export_layout", layout] if layout else []
  path = export(directory, tmp_path / f"{name}{suffix}", *flags)
  descriptor = spandrel.ModelLoader().load_from_file(path)
  assert_descriptor(descriptor, arch, GENERATORS[name][1])
  x = images()
  np.testing.assert_allclose(network_output(descriptor, x), expected, rtol=0, atol=TOLERANCE)
  # spandrel's own call (what ComfyUI / chaiNNer run): eval mode, its padding, clamped to [0, 1].
  # It pads x2 RRDBNets to a multiple of 4, not 2; for this size both pad to 20 x 24.
  with torch.no_grad():
    public = ref.to_nhwc(descriptor(ref.to_nchw(x)))
  np.testing.assert_allclose(public, np.clip(expected, 0, 1), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("export_key", ["params_ema", "params", "none"])
def test_every_wrapper_unwraps_in_spandrel(checkpoints, tmp_path, export_key):
  directory, arch, expected = checkpoints("rrdbnet_x2")
  path = export(directory, tmp_path / "g.pth", "--export_key", export_key)
  descriptor = spandrel.ModelLoader().load_from_file(path)
  assert_descriptor(descriptor, arch, ESRGAN)
  np.testing.assert_allclose(network_output(descriptor, images()), expected, rtol=0,
                             atol=TOLERANCE)


def test_other_growth_is_refused_by_spandrel(tmp_path):
  """spandrel builds ESRGAN with growth 32 whatever the file says, so an export with another
  growth (the file being right) fails there on the first dense conv's shape."""
  arch = {**rrdbnet(4), "num_grow_ch": 4}
  params = random_params(generator.generator_from_arch(arch))
  generator.save_generator(tmp_path / "ckpt", params, arch)
  path = export(tmp_path / "ckpt", tmp_path / "g.safetensors")
  with pytest.raises(RuntimeError, match=r"size mismatch for model\.1\.sub\.0\.RDB1\.conv1"):
    spandrel.ModelLoader().load_from_file(path)


# ------------------------------------------------------------------------------------------------
# spandrel -> esrgan_jax.


def spandrel_network(arch):
  """spandrel's own module for a record, built with the arguments its loader would pass."""
  architectures = spandrel.architectures
  if generator.arch_name(arch) == "rrdbnet":
    fold = generator.SCALE_CHANNEL_FOLD[arch["scale"]]
    # As spandrel's loader builds an x2 / x1 net: an x4 trunk behind a pixel unshuffle.
    return architectures.ESRGAN.ESRGAN(
        in_nc=arch["num_in_ch"] * fold, out_nc=arch["num_out_ch"], num_filters=arch["num_feat"],
        num_blocks=arch["num_block"], scale=4,
        shuffle_factor=4 // arch["scale"] if arch["scale"] < 4 else None)
  if generator.arch_name(arch) == "srvgg_compact":
    return architectures.Compact.Compact(
        num_in_ch=arch["num_in_ch"], num_out_ch=arch["num_out_ch"], num_feat=arch["num_feat"],
        num_conv=arch["num_conv"], upscale=arch["scale"], act_type=arch["act_type"])
  return architectures.SPAN.SPAN(
      num_in_ch=arch["num_in_ch"], num_out_ch=arch["num_out_ch"],
      feature_channels=arch["feature_channels"], upscale=arch["scale"], norm=arch["norm"])


def random_spandrel_network(arch, seed):
  """Random weights on every path: PReLU slopes near torch's 0.25 so the kink shows; SPAN keeps
  torch's default init, which keeps its activations in a sane range."""
  torch.manual_seed(seed)
  model = spandrel_network(arch)
  if generator.arch_name(arch) == "span":
    return model.eval()
  ref.seed_all_parameters(model, seed, gain=math.sqrt(2))
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.PReLU):
        module.weight.copy_(0.25 + 0.1 * torch.randn(module.weight.shape))
  return model.eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", GENERATORS)
def test_spandrel_networks_import_and_compute_the_same(tmp_path, name, suffix):
  arch = GENERATORS[name][0]
  model = random_spandrel_network(arch, seed=len(name))
  state = model.state_dict()
  source = tmp_path / f"{name}{suffix}"
  if suffix == ".pth":
    torch.save(state, source)
  else:
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, source)
  # Only the PReLU slopes say a compact net's activation; the others must be told.
  flags = [] if arch.get("act_type", "prelu") == "prelu" else ["--act_type", arch["act_type"]]
  assert convert.main([str(source), str(tmp_path / "ckpt"), *flags]) == 0
  params, read_arch = generator.load_generator(tmp_path / "ckpt")
  assert read_arch == arch
  x = images(seed=1)
  with torch.no_grad():
    expected = ref.to_nhwc(model(ref.to_nchw(x)))
  np.testing.assert_allclose(jax_output(arch, params, x), expected, rtol=0, atol=TOLERANCE)
