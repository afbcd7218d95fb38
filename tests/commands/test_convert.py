"""esrgan_jax.convert: PyTorch checkpoints in every key layout <-> Flax, the CLI, and bad input."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

from esrgan_jax import cli, convert
from esrgan_jax.models import RRDBNet, VGG19Features
from esrgan_jax.weights import discriminators, generator, vgg19
from esrgan_jax.weights.store import CheckpointError
from reference import torch_models as ref

TOLERANCE = 1e-4
ARCH = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)
ERROR_PREFIX = "esrgan_jax: error: "


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


def assert_one_line_error(capsys, path):
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith(f"{ERROR_PREFIX}{path}: "), captured.err
  assert "Traceback" not in captured.err
  return lines[0]


@pytest.mark.parametrize("layout, wrapper", [
    (generator.BASICSR, "params_ema"),   # Real-ESRGAN / BasicSR release files
    (generator.ESRGAN, None),            # ESRGAN repository, RRDBNet_arch names
    (generator.ESRGAN_ORIGINAL, None),   # RRDB_ESRGAN_x4.pth / RRDB_PSNR_x4.pth
])
def test_cli_converts_each_layout(tmp_path, layout, wrapper):
  torch_model = torch_generator(layout)
  state = torch_model.state_dict()
  # The 2018 ESRGAN releases predate torch.save's zip format: write that legacy pickle for them.
  torch.save({wrapper: state} if wrapper else state, tmp_path / "in.pth",
             _use_new_zipfile_serialization=layout != generator.ESRGAN_ORIGINAL)

  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out")]) == 0
  params, arch = generator.load_generator(tmp_path / "out")
  assert arch == ARCH
  assert_generator_matches(params, arch, torch_model)


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


@pytest.mark.parametrize("layout, export_key", [
    (generator.BASICSR, "params"),
    (generator.ESRGAN_ORIGINAL, "none"),
])
def test_cli_export_loads_strictly_in_torch(tmp_path, layout, export_key):
  torch_model = torch_generator(layout, seed=4)
  params, arch = generator.params_from_torch(ref.numpy_state_dict(torch_model))
  generator.save_generator(tmp_path / "ckpt", params, arch)

  out = tmp_path / "out.pth"
  assert convert.main(["--export", str(tmp_path / "ckpt"), str(out), "--export_key", export_key,
                       "--export_layout", layout]) == 0
  loaded = torch.load(out, weights_only=True)
  state = loaded if export_key == "none" else loaded[export_key]
  fresh = torch_generator(layout, seed=5)
  fresh.load_state_dict(state, strict=True)
  for key, value in torch_model.state_dict().items():
    np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), err_msg=key)


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


def _bad_input(tmp_path, kind):
  path = tmp_path / f"{kind}.pth"
  if kind == "truncated":
    torch.save(torch_generator(generator.BASICSR).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
  elif kind == "text":
    path.write_text("model:\n  scale: 4\n")
  elif kind == "png":
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
  elif kind == "other_architecture":
    torch.save(ref.VGGStyleDiscriminator(3, 4).state_dict(), path)
  return path


@pytest.mark.parametrize("kind, message", [
    ("truncated", "damaged or truncated PyTorch checkpoint"),
    ("text", "not a PyTorch checkpoint"),
    ("png", "not a PyTorch checkpoint"),
    ("other_architecture", "not an RRDBNet"),
])
def test_bad_input_gives_one_line_error(tmp_path, capsys, kind, message):
  path = _bad_input(tmp_path, kind)
  with pytest.raises(CheckpointError, match=message):
    generator.load_generator_from_torch(path)

  assert convert.main([str(path), str(tmp_path / "out")]) == 1
  assert message in assert_one_line_error(capsys, path)
  assert not (tmp_path / "out").exists()


def test_export_of_a_file_gives_one_line_error(tmp_path, capsys):
  path = _bad_input(tmp_path, "other_architecture")
  assert convert.main(["--export", str(path), str(tmp_path / "out.pth")]) == 1
  assert "not a directory" in assert_one_line_error(capsys, path)
  assert not (tmp_path / "out.pth").exists()


def test_cli_process_exits_1_without_traceback(tmp_path):
  path = _bad_input(tmp_path, "truncated")
  result = subprocess.run([sys.executable, "-m", "esrgan_jax.convert", str(path),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(f"{ERROR_PREFIX}{path}: damaged")


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


def test_vgg19_cli_writes_weights_the_trainer_loads(tmp_path):
  state = ref.vgg19_state_dict(seed=3)  # features.N.* plus classifier.*, as torchvision's file
  torch.save(state, tmp_path / "vgg19.pth")
  assert convert.main(["--vgg19", str(tmp_path / "vgg19.pth"), str(tmp_path / "vgg")]) == 0

  params = vgg19.load_vgg19_params(tmp_path / "vgg")
  for layer, index in (("conv1_1", 0), ("conv3_4", 16), ("conv5_4", 34)):
    np.testing.assert_array_equal(params[layer]["kernel"],
                                  state[f"features.{index}.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[layer]["bias"], state[f"features.{index}.bias"].numpy())
  from_pth = vgg19.load_vgg19_params(tmp_path / "vgg19.pth")
  jax.tree.map(np.testing.assert_array_equal, from_pth, params)

  # `layers` trims to the tree of VGG19Features(layers=...), which the trainer maps over.
  layers = ("conv1_2", "conv2_2")
  trimmed = vgg19.load_vgg19_params(tmp_path / "vgg", layers=layers)
  module_tree = jax.eval_shape(VGG19Features(layers=layers).init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, 16, 16, 3), np.float32))["params"]
  assert jax.tree.structure(trimmed) == jax.tree.structure(module_tree)

  generator_dir = tmp_path / "generator"
  generator.save_generator(
      generator_dir, *generator.params_from_torch(
          ref.numpy_state_dict(torch_generator(generator.BASICSR))))
  with pytest.raises(CheckpointError, match="not a converted VGG19 directory"):
    vgg19.load_vgg19_params(generator_dir)
  with pytest.raises(CheckpointError, match="not an RRDBNet"):
    generator.load_generator_from_torch(tmp_path / "vgg19.pth")


@pytest.fixture
def read_only_dir(tmp_path):
  """A directory this process cannot write into: chmod 555, or sysfs where root ignores modes."""
  directory = tmp_path / "read_only"
  directory.mkdir()
  directory.chmod(0o555)
  # Root writes through file modes; sysfs refuses new entries even to root.
  yield pathlib.Path("/sys/esrgan_jax_read_only") if os.access(directory, os.W_OK) else directory
  directory.chmod(0o755)


def test_read_only_destination_is_one_line_and_exit_1(tmp_path, capsys, read_only_dir):
  torch.save(torch_generator(generator.BASICSR).state_dict(), tmp_path / "in.pth")
  destination = read_only_dir / "out"
  assert convert.main([str(tmp_path / "in.pth"), str(destination)]) == 1
  assert "cannot write" in assert_one_line_error(capsys, destination)

  generator.convert_generator(tmp_path / "in.pth", tmp_path / "ckpt")
  destination = read_only_dir / "out.pth"
  assert convert.main(["--export", str(tmp_path / "ckpt"), str(destination)]) == 1
  assert "cannot write" in assert_one_line_error(capsys, destination)


@pytest.mark.parametrize("torch_model, name", [
    (ref.VGGStyleDiscriminator(3, 4), "vgg_style"),
    (ref.UNetDiscriminatorSN(3, 4), "unet_sn"),
])
def test_discriminator_cli_writes_both_collections(tmp_path, torch_model, name):
  ref.seed_all_parameters(torch_model, seed=6)
  state = ref.numpy_state_dict(torch_model)
  torch.save({"params": torch_model.state_dict()}, tmp_path / "net_d.pth")  # BasicSR's wrapper
  assert convert.main(["--discriminator", str(tmp_path / "net_d.pth"), str(tmp_path / "d")]) == 0
  loaded_name, arch, variables = discriminators.load_discriminator(tmp_path / "d")
  expected_name, expected, expected_arch = discriminators.discriminator_variables_from_torch(state)
  assert (loaded_name, arch) == (name, expected_arch) and expected_name == name
  assert jax.tree.structure(variables) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, variables, expected)
  with pytest.raises(CheckpointError, match="not a converted discriminator directory"):
    discriminators.load_discriminator(tmp_path)


def test_help_documents_exit_statuses_and_hyphen_aliases_work(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    convert.main(["--help"])
  assert exit_info.value.code == 0
  assert " ".join(capsys.readouterr().out.split()).endswith(" ".join(cli.EXIT_STATUS_HELP.split()))
  with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error
    convert.main(["a.pth", "out", "--backbone", "b.pth"])
  assert exit_info.value.code == 2
  state = torch_generator(generator.BASICSR).state_dict()
  torch.save({"params": state}, tmp_path / "in.pth")
  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out"), "--weights-key",
                       "params"]) == 0
