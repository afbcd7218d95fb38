"""SRVGGNetCompact's and SPAN's PyTorch layouts <-> Flax trees (weights/srvgg.py, weights/span.py),
and .safetensors files (weights/torch_io.py): outputs agree with the references, architectures are
inferred, exports load strictly and round-trip bit-exactly, bad keys are named."""

import sys

import jax
import numpy as np
import pytest
import safetensors.torch
import torch

from esrgan_jax.models.span import fold
from esrgan_jax.weights import span, srvgg, torch_io
from esrgan_jax.weights.store import CheckpointError
from reference import torch_models as ref
from reference import torch_span, torch_srvgg

TOLERANCE = 1e-4
TINY_SRVGG = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2)


def images(shape, seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def srvgg_reference(seed=0, **arch):
  """Random weights on every path; PReLU slopes near torch's 0.25, so the kink shows."""
  model = ref.seed_all_parameters(torch_srvgg.SRVGGNetCompact(**arch), seed, gain=np.sqrt(2))
  generator = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for layer in model.body:
      if isinstance(layer, torch.nn.PReLU):
        layer.weight.copy_(0.25 + 0.1 * torch.randn(layer.weight.shape, generator=generator))
  return model


def span_reference(seed=0, **arch):
  torch.manual_seed(seed)  # torch's default init keeps SPAN's activations in a sane range
  return torch_span.SPAN(**arch)


def srvgg_arch(upscale=4, act_type="prelu", **sizes):
  """The record infer_arch should give for the reference built with these arguments."""
  sizes = {**TINY_SRVGG, **sizes}
  return {"arch": "srvgg_compact", "num_in_ch": sizes["num_in_ch"],
          "num_out_ch": sizes["num_out_ch"], "scale": upscale, "num_feat": sizes["num_feat"],
          "num_conv": sizes["num_conv"], "act_type": act_type}


def span_arch(feature_channels=8, upscale=4, norm=True, num_in_ch=3, num_out_ch=3):
  return {"arch": "span", "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "scale": upscale,
          "feature_channels": feature_channels, "norm": norm}


def torch_output(model, x, train=False):
  model.train(train)
  with torch.no_grad():
    return ref.to_nhwc(model(ref.to_nchw(x)))


def assert_one_line_error(call, *fragments):
  with pytest.raises(CheckpointError) as error:
    call()
  message = str(error.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, f"{fragment!r} not in {message!r}"


# ------------------------------------------------------------------------------------------------
# SRVGGNetCompact.


@pytest.mark.parametrize("upscale, act_type", [(1, "prelu"), (2, "relu"), (3, "leakyrelu"),
                                               (4, "prelu")])
def test_srvgg_import_matches_torch(upscale, act_type):
  model = srvgg_reference(upscale, **TINY_SRVGG, upscale=upscale, act_type=act_type)
  given = None if act_type == "prelu" else act_type  # only PReLU leaves a trace in the file
  params, arch = srvgg.params_from_torch(model.state_dict(), "c.pth", act_type=given)
  assert arch == srvgg_arch(upscale, act_type)
  x = images((2, 7, 9, 3))
  out = srvgg.model_from_arch(arch).apply({"params": params}, x)
  np.testing.assert_allclose(out, torch_output(model, x), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("kwargs", [
    dict(num_feat=64, num_conv=16, upscale=4),  # realesr-animevideov3
    dict(num_feat=64, num_conv=32, upscale=4),  # realesr-general-x4v3
    dict(num_feat=16, num_conv=0, upscale=1),
    dict(num_feat=8, num_conv=3, upscale=2, act_type="relu"),
    dict(num_feat=8, num_conv=1, upscale=3, act_type="leakyrelu"),
    dict(num_in_ch=1, num_out_ch=1, upscale=2),
    dict(num_in_ch=4, num_out_ch=4, upscale=4),
    dict(num_in_ch=1, num_out_ch=3, upscale=2),  # spandrel's guess after out = in: 3
])
def test_srvgg_infers_every_field(kwargs):
  kwargs = {**TINY_SRVGG, **kwargs}
  with torch.device("meta"):  # shapes are all that inference needs
    state = torch_srvgg.SRVGGNetCompact(**kwargs).state_dict()
  act_type = kwargs.pop("act_type", "prelu")
  assert srvgg.is_srvgg(state)
  given = None if act_type == "prelu" else act_type
  assert srvgg.infer_arch(state, act_type=given) == srvgg_arch(act_type=act_type, **kwargs)
  if given:  # relu or leakyrelu: the file does not say which
    assert_one_line_error(lambda: srvgg.infer_arch(state, "c.pth"), "c.pth: ", "give act_type")


def test_srvgg_export_loads_strictly_and_round_trips_bit_exactly():
  model = srvgg_reference(5, **TINY_SRVGG, upscale=2)
  state = ref.numpy_state_dict(model)
  params, arch = srvgg.params_from_torch(state)
  exported = srvgg.params_to_torch(params, arch)
  assert list(exported) == list(state)  # the released files' names, in PyTorch's order
  for key, value in state.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  fresh = torch_srvgg.SRVGGNetCompact(**TINY_SRVGG, upscale=2)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  back, back_arch = srvgg.params_from_torch(exported)
  assert back_arch == arch
  jax.tree.map(np.testing.assert_array_equal, back, params)


@pytest.mark.parametrize("act_type", ["relu", "leakyrelu"])
def test_srvgg_export_writes_relu_and_leakyrelu_as_prelu_slopes(act_type):
  """So that spandrel, which finds a compact file by its slopes, loads every export."""
  model = srvgg_reference(6, **TINY_SRVGG, upscale=2, act_type=act_type)
  params, arch = srvgg.params_from_torch(ref.numpy_state_dict(model), act_type=act_type)
  exported = srvgg.params_to_torch(params, arch)
  slope = {"relu": 0.0, "leakyrelu": 0.1}[act_type]
  for layer in range(1, 2 * TINY_SRVGG["num_conv"] + 2, 2):
    np.testing.assert_array_equal(exported[f"body.{layer}.weight"],
                                  np.full(TINY_SRVGG["num_feat"], slope, np.float32))
  as_prelu = torch_srvgg.SRVGGNetCompact(**TINY_SRVGG, upscale=2)
  as_prelu.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  x = images((1, 7, 9, 3))
  np.testing.assert_array_equal(torch_output(as_prelu, x), torch_output(model, x))
  back, back_arch = srvgg.params_from_torch(exported)
  assert back_arch == {**arch, "act_type": "prelu"}
  np.testing.assert_allclose(srvgg.model_from_arch(back_arch).apply({"params": back}, x),
                             torch_output(model, x), rtol=0, atol=TOLERANCE)


def test_srvgg_bad_keys_are_named():
  state = ref.numpy_state_dict(srvgg_reference(**TINY_SRVGG))
  state.pop("body.2.bias")
  state["body.3.extra"] = np.zeros(8, np.float32)
  assert not srvgg.is_srvgg(state)
  assert_one_line_error(lambda: srvgg.params_from_torch(state, "c.pth"), "c.pth: ",
                        "missing key(s) body.2.bias", "unexpected key(s) body.3.extra")
  state = ref.numpy_state_dict(srvgg_reference(**TINY_SRVGG))
  state["body.3.weight"] = state["body.3.weight"][:-1]
  assert_one_line_error(lambda: srvgg.params_from_torch(state, "c.pth"),
                        "c.pth: body.3.weight has shape (7,)")
  # PReLU slopes in a file read as a ReLU net are keys too many.
  state = ref.numpy_state_dict(srvgg_reference(**TINY_SRVGG))
  assert_one_line_error(lambda: srvgg.params_from_torch(state, "c.pth", act_type="relu"),
                        "unexpected key(s) body.1.weight")


def test_srvgg_refuses_what_it_cannot_run():
  with torch.device("meta"):
    rrdbnet = ref.RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).state_dict()
    # 3 in, 16 out: spandrel reads out_ch 4 at x2, which cannot add a 3-channel input.
    four_out = torch_srvgg.SRVGGNetCompact(3, 16, num_feat=8, num_conv=1, upscale=1).state_dict()
  assert not srvgg.is_srvgg(rrdbnet)
  assert_one_line_error(lambda: srvgg.infer_arch(rrdbnet, "g.pth"), "g.pth: not an SRVGGNetCompact")
  assert_one_line_error(lambda: srvgg.infer_arch(four_out, "c.pth"), "c.pth: ",
                        "num_in_ch must be 1 or num_out_ch")
  params, arch = srvgg.params_from_torch(ref.numpy_state_dict(srvgg_reference(**TINY_SRVGG)))
  assert_one_line_error(lambda: srvgg.params_to_torch(params, {**arch, "act_type": "gelu"}),
                        "act_type must be one of")
  assert_one_line_error(lambda: srvgg.params_to_torch(params, {**arch, "arch": "span"}),
                        "'span' is not 'srvgg_compact'")
  params.pop("body_4")
  assert_one_line_error(lambda: srvgg.params_to_torch(params, arch),
                        "missing parameter(s) body_4/bias, body_4/kernel")


# ------------------------------------------------------------------------------------------------
# SPAN.

SPAN_CASES = [dict(feature_channels=8, upscale=1, norm=True),
              dict(feature_channels=8, upscale=2, norm=False),
              dict(feature_channels=8, upscale=3, norm=True),
              dict(feature_channels=8, upscale=4, norm=False)]


@pytest.mark.parametrize("kwargs", SPAN_CASES, ids=str)
def test_span_import_matches_torch_in_both_forms(kwargs):
  model = span_reference(kwargs["upscale"], **kwargs)
  params, arch = span.params_from_torch(model.state_dict(), "s.pth")
  assert arch == span_arch(**kwargs)
  x = images((1, 9, 7, 3))
  out = span.model_from_arch(arch).apply({"params": params}, x)
  np.testing.assert_allclose(out, torch_output(model, x, train=True), rtol=0, atol=TOLERANCE)
  folded = span.model_from_arch(arch, deploy=True).apply({"params": fold(params)}, x)
  np.testing.assert_allclose(folded, torch_output(model, x), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("kwargs", [
    dict(feature_channels=48, upscale=4, norm=True),  # the official SPAN x4
    dict(feature_channels=48, upscale=2, norm=False),
    dict(feature_channels=52, upscale=4, norm=True),
    dict(feature_channels=52, upscale=1, norm=False),
    dict(feature_channels=8, upscale=3, norm=False, num_in_ch=1, num_out_ch=1),
    dict(feature_channels=8, upscale=2, norm=False, num_in_ch=4, num_out_ch=4),
], ids=str)
def test_span_infers_every_field(kwargs):
  with torch.device("meta"):
    state = torch_span.SPAN(**kwargs).state_dict()
  assert span.is_span(state) and not srvgg.is_srvgg(state)
  assert span.infer_arch(state) == span_arch(**kwargs)


def test_span_export_loads_strictly_and_round_trips_bit_exactly():
  for norm in (True, False):
    model = span_reference(7, feature_channels=8, upscale=2, norm=norm)
    state = ref.numpy_state_dict(model)
    params, arch = span.params_from_torch(state)
    exported = span.params_to_torch(params, arch)
    assert list(exported) == list(state)  # spandrel's keys in PyTorch's order, no_norm included
    for key, value in state.items():
      if "eval_conv" not in key:
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    fresh = torch_span.SPAN(feature_channels=8, upscale=2, norm=norm)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    # The exported eval_conv is the reference's own fold of the same branches.
    torch_output(model, images((1, 4, 4, 3)))  # eval mode: writes the fold into eval_conv
    for key, value in ref.numpy_state_dict(model).items():
      if "eval_conv" in key:
        np.testing.assert_allclose(exported[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    back, back_arch = span.params_from_torch(exported)
    assert back_arch == arch
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_span_ignores_a_stored_eval_conv_as_spandrel_does():
  state = ref.numpy_state_dict(span_reference(feature_channels=8, upscale=2))
  params, _ = span.params_from_torch(state)
  stale = {k: (np.full_like(v, 7.0) if "eval_conv" in k else v) for k, v in state.items()}
  jax.tree.map(np.testing.assert_array_equal, span.params_from_torch(stale)[0], params)
  branches_only = {k: v for k, v in state.items() if "eval_conv" not in k}
  assert span.is_span(branches_only)
  jax.tree.map(np.testing.assert_array_equal, span.params_from_torch(branches_only)[0], params)


def test_span_bad_keys_are_named():
  fresh = lambda: ref.numpy_state_dict(span_reference(feature_channels=8, upscale=2))
  state = fresh()
  state.pop("block_3.c2_r.conv.1.weight")
  state["block_7.c1_r.sk.weight"] = np.zeros((8, 8, 1, 1), np.float32)
  assert_one_line_error(lambda: span.params_from_torch(state, "s.pth"), "s.pth: ",
                        "missing key(s) block_3.c2_r.conv.1.weight",
                        "unexpected key(s) block_7.c1_r.sk.weight")
  state = fresh()
  state["conv_cat.weight"] = state["conv_cat.weight"][:, :-1]
  assert_one_line_error(lambda: span.params_from_torch(state, "s.pth"),
                        "s.pth: conv_cat.weight has shape (8, 31, 1, 1)")
  state = fresh()
  state.pop("conv_1.sk.weight")
  assert not span.is_span(state)
  assert_one_line_error(lambda: span.params_from_torch(state, "s.pth"),
                        "s.pth: not a SPAN state dict: conv_1.sk.weight is missing")


def test_span_refuses_what_it_cannot_run():
  with torch.device("meta"):
    gray = torch_span.SPAN(num_in_ch=1, num_out_ch=1, feature_channels=8, upscale=2).state_dict()
  assert_one_line_error(lambda: span.infer_arch(gray, "s.pth"), "s.pth: ",
                        "normalises its input by an RGB mean")
  params, arch = span.params_from_torch(
      ref.numpy_state_dict(span_reference(feature_channels=8, upscale=2)))
  assert_one_line_error(lambda: span.params_to_torch(params, {**arch, "feature_channels": 16}),
                        "block_1/c1_r/conv/0/bias has shape (16,)")
  assert_one_line_error(lambda: span.params_to_torch(fold(params), arch),
                        "missing parameter(s) block_1/c1_r/conv/0/bias")
  no_scale = {k: v for k, v in arch.items() if k != "scale"}
  assert_one_line_error(lambda: span.params_to_torch(params, no_scale), "missing field(s)")


# ------------------------------------------------------------------------------------------------
# .safetensors files.


@pytest.mark.parametrize("make", [lambda: srvgg_reference(**TINY_SRVGG),
                                  lambda: span_reference(feature_channels=8, norm=False)],
                         ids=["srvgg", "span"])
def test_safetensors_reads_as_the_pth_does(make, tmp_path):
  state = make().state_dict()
  torch.save(state, tmp_path / "model.pth")
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  from_pth = torch_io.read_state_dict(tmp_path / "model.pth")
  from_safetensors = torch_io.read_state_dict(tmp_path / "model.safetensors")
  assert sorted(from_safetensors) == sorted(from_pth)  # the format keeps no key order
  for key, value in from_pth.items():
    np.testing.assert_array_equal(from_safetensors[key], value.numpy(), err_msg=key)
  module = span if span.is_span(from_safetensors) else srvgg
  params, arch = module.params_from_torch(from_safetensors)
  expected_params, expected_arch = module.params_from_torch(from_pth)
  assert arch == expected_arch
  jax.tree.map(np.testing.assert_array_equal, params, expected_params)


def test_safetensors_export_round_trips(tmp_path):
  params, arch = srvgg.params_from_torch(srvgg_reference(**TINY_SRVGG).state_dict())
  state = srvgg.params_to_torch(params, arch)
  path = tmp_path / "out" / "compact.safetensors"
  torch_io.write_state_dict(path, state)
  back = safetensors.torch.load_file(path)  # what other tools see
  assert sorted(back) == sorted(state)
  for key, value in state.items():
    np.testing.assert_array_equal(back[key].numpy(), value, err_msg=key)
  assert_one_line_error(lambda: torch_io.write_state_dict(path, state), "already exists")
  assert_one_line_error(lambda: torch_io.write_state_dict(tmp_path / "w.safetensors",
                                                          {"params": state}),
                        "entries params are dicts")
  torch_io.write_state_dict(tmp_path / "compact.pth", state)  # other suffixes: torch.save
  pth = torch_io.read_state_dict(tmp_path / "compact.pth")
  np.testing.assert_array_equal(pth["body.0.weight"].numpy(), state["body.0.weight"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_safetensors_half_precision_is_widened(dtype, tmp_path):
  model = srvgg_reference(**TINY_SRVGG).to(dtype)
  safetensors.torch.save_file(model.state_dict(), tmp_path / "half.safetensors")
  params, _ = srvgg.params_from_torch(torch_io.read_state_dict(tmp_path / "half.safetensors"))
  np.testing.assert_array_equal(params["body_1"]["weight"], model.body[1].weight.float().detach())
  assert params["body_0"]["kernel"].dtype == np.float32


def test_safetensors_damaged_files_are_one_line_errors(tmp_path):
  state = srvgg_reference(**TINY_SRVGG).state_dict()
  data = safetensors.torch.save(state)
  (tmp_path / "cut.safetensors").write_bytes(data[:-10])
  (tmp_path / "empty.safetensors").write_bytes(b"")
  (tmp_path / "dir.safetensors").mkdir()
  read = torch_io.read_state_dict
  assert_one_line_error(lambda: read(tmp_path / "cut.safetensors"),
                        "cut.safetensors: damaged or truncated .safetensors file")
  assert_one_line_error(lambda: read(tmp_path / "empty.safetensors"), "is empty")
  assert_one_line_error(lambda: read(tmp_path / "dir.safetensors"), "is a directory")
  assert_one_line_error(lambda: read(tmp_path / "none.safetensors"), "no such file")
  (tmp_path / "bare.safetensors").write_bytes(data)
  assert_one_line_error(lambda: read(tmp_path / "bare.safetensors", "params_ema"),
                        "has no 'params_ema' entry (found a bare state dict)")


def test_safetensors_types_numpy_cannot_hold_are_named(tmp_path, monkeypatch):
  path = tmp_path / "fp8.safetensors"
  safetensors.torch.save_file({"body.0.weight": torch.zeros(2, dtype=torch.float8_e4m3fn)}, path)
  assert_one_line_error(lambda: torch_io.read_state_dict(path),
                        "fp8.safetensors: holds F8_E4M3 tensors, which NumPy cannot read")
  monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # as if not installed
  assert_one_line_error(lambda: torch_io.read_state_dict(path), "needs the safetensors package")
