"""python -m esrgan_jax.convert: every weight file it takes in and out, and its bad input (the key
layouts themselves: tests/weights/test_layouts.py)."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.torch
import torch

from esrgan_jax import cli, convert
from esrgan_jax.models import VGG19Features
from esrgan_jax.weights import discriminators, generator, vgg19
from esrgan_jax.weights.store import CheckpointError
from reference import torch_models as ref
from reference import torch_span, torch_srvgg
from tests.weights.test_fast_layouts import (TINY_SRVGG, span_arch, span_reference, srvgg_arch,
                                             srvgg_reference, torch_output)
from tests.weights.test_layouts import ARCH, assert_generator_matches, torch_generator

ERROR_PREFIX = "esrgan_jax: error: "


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


def test_import_and_export_print_the_model_one_way(tmp_path, capsys):
  torch.save(torch_generator(generator.BASICSR).state_dict(), tmp_path / "in.pth")
  call = "RRDBNet(" + ", ".join(f"{k}={ARCH[k]}" for k in generator.rrdbnet.ARCH_FIELDS) + ")"
  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "ckpt")]) == 0
  assert capsys.readouterr().out == f"wrote {tmp_path / 'ckpt'}: {call}\n"
  assert convert.main(["--export", str(tmp_path / "ckpt"), str(tmp_path / "out.pth")]) == 0
  assert capsys.readouterr().out == f"wrote {tmp_path / 'out.pth'}: {call} in the basicsr layout\n"
  assert convert.main(["--export", str(tmp_path / "ckpt"), str(tmp_path / "out.onnx")]) == 0
  assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'out.onnx'}: {call} as ONNX")


# Real-ESRGAN compact and SPAN: (reference builder, its constructor arguments, expected record).
FAST_GENERATORS = {
    "srvgg": (torch_srvgg.SRVGGNetCompact, dict(TINY_SRVGG, upscale=4), srvgg_arch()),
    "span": (torch_span.SPAN, dict(feature_channels=8, upscale=2), span_arch(upscale=2)),
}


def fast_reference(name, seed=0):
  cls, kwargs, _ = FAST_GENERATORS[name]
  if cls is torch_srvgg.SRVGGNetCompact:
    return srvgg_reference(seed, **kwargs)
  return span_reference(seed, **kwargs)


def save_torch_file(model, path, wrapper=None):
  state = model.state_dict()
  if str(path).endswith(".safetensors"):
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, path)
  else:
    torch.save({wrapper: state} if wrapper else state, path)


@pytest.mark.parametrize("name", FAST_GENERATORS)
@pytest.mark.parametrize("suffix, wrapper", [(".pth", "params"), (".pth", None),
                                             (".safetensors", None)])
def test_cli_converts_compact_and_span(tmp_path, capsys, name, suffix, wrapper):
  torch_model = fast_reference(name, seed=1)
  save_torch_file(torch_model, tmp_path / f"in{suffix}", wrapper)
  assert convert.main([str(tmp_path / f"in{suffix}"), str(tmp_path / "out")]) == 0
  assert generator.describe(FAST_GENERATORS[name][2]) in capsys.readouterr().out

  params, arch = generator.load_generator(tmp_path / "out")
  assert arch == FAST_GENERATORS[name][2]
  x = np.random.default_rng(0).random((1, 10, 12, 3), dtype=np.float32)
  # The inference form (SPAN folded) and the checkpoint's own form both compute the reference's.
  for model, model_params in (generator.inference_model_and_params(arch, params),
                              (generator.generator_from_arch(arch), params)):
    out = model.apply({"params": model_params}, x)
    np.testing.assert_allclose(out, torch_output(torch_model, x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", FAST_GENERATORS)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_cli_exports_compact_and_span_strictly_and_bit_exactly(tmp_path, name, suffix):
  torch_model = fast_reference(name, seed=2)
  save_torch_file(torch_model, tmp_path / "in.pth")
  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "ckpt")]) == 0
  out = tmp_path / f"out{suffix}"
  assert convert.main(["--export", str(tmp_path / "ckpt"), str(out)]) == 0

  if suffix == ".pth":
    state = torch.load(out, weights_only=True)["params"]  # Real-ESRGAN's wrapper by default
  else:
    state = safetensors.torch.load_file(out)  # flat
  cls, kwargs, _ = FAST_GENERATORS[name]
  fresh = cls(**kwargs)
  fresh.load_state_dict(state, strict=True)
  for key, value in torch_model.state_dict().items():
    if "eval_conv" not in key:  # the reference's eval_conv is filled in only by an eval forward
      np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), err_msg=key)
  # And back: the same checkpoint, bit for bit.
  assert convert.main([str(out), str(tmp_path / "back")]) == 0
  back, back_arch = generator.load_generator(tmp_path / "back")
  params, arch = generator.load_generator(tmp_path / "ckpt")
  assert back_arch == arch
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_compact_without_prelu_needs_act_type(tmp_path, capsys):
  torch_model = srvgg_reference(3, **TINY_SRVGG, act_type="leakyrelu")
  save_torch_file(torch_model, tmp_path / "in.pth", "params_ema")
  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out")]) == 1
  assert "give act_type" in assert_one_line_error(capsys, tmp_path / "in.pth")
  assert convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out"), "--act_type",
                       "leakyrelu"]) == 0
  params, arch = generator.load_generator(tmp_path / "out")
  assert arch == srvgg_arch(act_type="leakyrelu")
  x = np.random.default_rng(1).random((1, 6, 7, 3), dtype=np.float32)
  out = generator.generator_from_arch(arch).apply({"params": params}, x)
  np.testing.assert_allclose(out, torch_output(torch_model, x), rtol=0, atol=1e-4)
  # act_type is for compact files only; a RRDBNet's --export_layout for RRDBNet only.
  torch.save(torch_generator(generator.BASICSR).state_dict(), tmp_path / "rrdb.pth")
  assert convert.main([str(tmp_path / "rrdb.pth"), str(tmp_path / "o2"), "--act_type",
                       "relu"]) == 1
  assert "act_type is for SRVGGNetCompact" in assert_one_line_error(capsys, tmp_path / "rrdb.pth")
  assert convert.main(["--export", str(tmp_path / "out"), str(tmp_path / "o.pth"),
                       "--export_layout", "esrgan"]) == 1
  assert "layout is RRDBNet's" in assert_one_line_error(capsys, tmp_path / "out")


def test_non_generator_safetensors_is_one_line(tmp_path, capsys):
  path = tmp_path / "other.safetensors"
  safetensors.torch.save_file(ref.VGGStyleDiscriminator(3, 4).state_dict(), path)
  assert convert.main([str(path), str(tmp_path / "out")]) == 1
  line = assert_one_line_error(capsys, path)
  assert "not an RRDBNet (ESRGAN generator), SRVGGNetCompact or SPAN state dict" in line
  assert not (tmp_path / "out").exists()


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


@pytest.mark.parametrize("destination", ["model.txt", "model", "model.pth.bak"])
def test_export_refuses_a_suffix_that_names_no_format(tmp_path, capsys, destination):
  """--export picks the format from the suffix: an unknown one is a usage error, nothing written."""
  with pytest.raises(SystemExit) as exit_info:
    convert.main(["--export", str(tmp_path / "ckpt"), str(tmp_path / destination)])
  assert exit_info.value.code == 2
  assert "--export writes .pth, .pt, .safetensors, .onnx" in capsys.readouterr().err
  assert not (tmp_path / destination).exists()
