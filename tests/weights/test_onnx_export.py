"""`python -m esrgan_jax.convert --export CKPT_DIR OUT.onnx [--half]` (weights/onnx_export.py):
every architecture's graph, run by onnxruntime on the CPU, computes what the JAX model computes,
on odd sizes and batches; the model's interface; the flags it refuses."""

import subprocess
import sys

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from esrgan_jax import convert
from esrgan_jax.weights import generator, onnx_export
from esrgan_jax.weights.store import CheckpointError
from tests import REPO_ROOT
from tests.tiny_generator import random_params

TOLERANCE = 1e-4
# float16 keeps 11 significant bits (steps of 2^-11 relative); a tiny network's output drifts by
# a few steps, so the bound is 5e-3 of the output's magnitude (at least 1).
HALF_RELATIVE_TOLERANCE = 5e-3
ODD = ((2, 37, 53), (1, 11, 8))  # (batch, height, width): both run through one session
# RRDBNet x2 / x1 pixel-unshuffle the input, which must then be a multiple of 2 / 4 (as in torch).
EVEN = ((2, 36, 52), (1, 12, 8))


def _rrdbnet(scale, num_block=1):
  return {"num_in_ch": 3, "num_out_ch": 3, "scale": scale, "num_feat": 8, "num_block": num_block,
          "num_grow_ch": 4}


def _compact(scale, act_type):
  return {"arch": "srvgg_compact", "num_in_ch": 3, "num_out_ch": 3, "scale": scale, "num_feat": 8,
          "num_conv": 2, "act_type": act_type}


def _span(scale, norm):
  return {"arch": "span", "num_in_ch": 3, "num_out_ch": 3, "scale": scale, "feature_channels": 8,
          "norm": norm}


CASES = {
    "rrdbnet_x4": (_rrdbnet(4), ODD),
    "rrdbnet_x2": (_rrdbnet(2), EVEN),
    "rrdbnet_x1": (_rrdbnet(1, num_block=2), EVEN),
    "compact_prelu_x4": (_compact(4, "prelu"), ODD),
    "compact_relu_x3": (_compact(3, "relu"), ODD),
    "compact_leakyrelu_x2": (_compact(2, "leakyrelu"), ODD),
    "compact_prelu_x1": (_compact(1, "prelu"), ODD),
    "span_x4_norm": (_span(4, True), ODD),
    "span_x2_norm": (_span(2, True), ODD),
    "span_x1_no_norm": (_span(1, False), ODD),
}


def _checkpoint(tmp_path, arch, seed=0):
  """A generator checkpoint with random params (SPAN's in the branch form, as checkpoints are)."""
  params = random_params(generator.generator_from_arch(arch), seed)
  generator.save_generator(tmp_path / "ckpt", params, arch)
  return tmp_path / "ckpt", params


def _jax_nchw(arch, params, x_nchw):
  model, model_params = generator.inference_model_and_params(arch, params)
  # Jitted: one compile beats op-by-op dispatch on these small graphs.
  out = jax.jit(model.apply)({"params": model_params}, x_nchw.transpose(0, 2, 3, 1))
  return np.asarray(out, np.float32).transpose(0, 3, 1, 2)


def _session(path):
  return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", CASES)
def test_onnx_export_computes_the_jax_model_in_float32_and_float16(tmp_path, capsys, name):
  arch, shapes = CASES[name]
  ckpt, params = _checkpoint(tmp_path, arch)
  full, half = tmp_path / "g.onnx", tmp_path / "g16.onnx"
  assert convert.main(["--export", str(ckpt), str(full)]) == 0
  assert "float32 'input' -> 'output'" in capsys.readouterr().out
  assert convert.main(["--export", str(ckpt), str(half), "--half"]) == 0
  assert "float16 'input' -> 'output'" in capsys.readouterr().out

  sessions = {np.float32: _session(full), np.float16: _session(half)}
  rng = np.random.default_rng(1)
  for batch, height, width in shapes:
    x = rng.random((batch, 3, height, width), dtype=np.float32)
    expected = _jax_nchw(arch, params, x)
    scale = arch["scale"]
    assert expected.shape == (batch, 3, height * scale, width * scale)
    for dtype, session in sessions.items():
      (out,) = session.run(None, {"input": x.astype(dtype)})
      assert out.dtype == dtype and out.shape == expected.shape, (dtype, out.shape)
      out = out.astype(np.float32)
      if dtype == np.float32:
        np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE)
      else:
        bound = HALF_RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(out, expected, rtol=0, atol=bound)


def _dims(value_info):
  return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("half", [False, True])
def test_the_model_interface(tmp_path, half):
  arch = _compact(4, "prelu")
  ckpt, _ = _checkpoint(tmp_path, arch)
  out = tmp_path / "g.onnx"
  assert convert.main(["--export", str(ckpt), str(out)] + (["--half"] if half else [])) == 0
  model = onnx.load(str(out))
  onnx.checker.check_model(model, full_check=True)
  assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
  (graph_input,), (graph_output,) = model.graph.input, model.graph.output
  assert (graph_input.name, graph_output.name) == ("input", "output")
  # Batch, height and width are symbolic; the channels are fixed.
  assert _dims(graph_input) == ["batch", 3, "height", "width"]
  assert _dims(graph_output) == ["batch", 3, "out_height", "out_width"]
  elem = onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT
  assert graph_input.type.tensor_type.elem_type == elem
  assert graph_output.type.tensor_type.elem_type == elem
  float_types = {onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT}
  weights = [t for t in model.graph.initializer if t.name.endswith((".weight", ".bias"))]
  assert weights and {t.data_type for t in weights} == {elem}
  # Resize's scales are float32 by the standard; nothing else is of the other float type.
  others = {t.name for t in model.graph.initializer if t.data_type in float_types - {elem}}
  assert others == (set() if not half else {"base.scales"})
  # Initializers carry the PyTorch state dict's names, and the record rides along.
  assert {t.name for t in weights} >= {"body.0.weight", "body.1.weight", "body.6.bias"}
  assert {p.key for p in model.metadata_props} >= {"arch", "scale"}


def test_pixel_unshuffle_follows_pytorch_channel_order(tmp_path):
  """x1 RRDBNet: conv_first reads pixel_unshuffle's channel c * 16 + row * 4 + col, where
  SpaceToDepth alone gives (row * 4 + col) * 3 + c. The Gather's output, made a graph output, is
  torch's F.pixel_unshuffle exactly."""
  arch = _rrdbnet(1)
  ckpt, _ = _checkpoint(tmp_path, arch)
  out = tmp_path / "g.onnx"
  assert convert.main(["--export", str(ckpt), str(out)]) == 0
  model = onnx.load(str(out))
  probe = onnx.helper.make_tensor_value_info("pixel_unshuffle", onnx.TensorProto.FLOAT, None)
  model.graph.output.append(probe)
  x = np.random.default_rng(2).random((2, 3, 12, 16), dtype=np.float32)
  session = onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  unshuffled = session.run(["pixel_unshuffle"], {"input": x})[0]
  np.testing.assert_array_equal(unshuffled,
                                torch.nn.functional.pixel_unshuffle(torch.from_numpy(x), 4))


def _usage_error(capsys, argv):
  with pytest.raises(SystemExit) as exit_info:
    convert.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  errors = [line for line in err.splitlines() if "error:" in line]
  assert len(errors) == 1 and "Traceback" not in err, err
  return errors[0]


def test_flags_that_do_not_fit_an_onnx_export_are_usage_errors(tmp_path, capsys):
  ckpt, _ = _checkpoint(tmp_path, _compact(2, "relu"))
  assert "--half goes with --export to a .onnx" in _usage_error(
      capsys, ["--export", str(ckpt), str(tmp_path / "g.pth"), "--half"])
  assert "--half goes with" in _usage_error(
      capsys, [str(tmp_path / "in.pth"), str(tmp_path / "out.onnx"), "--half"])
  for flag in (["--export_key", "params"], ["--export_layout", "basicsr"]):
    line = _usage_error(capsys, ["--export", str(ckpt), str(tmp_path / "g.onnx"), *flag])
    assert "no state-dict wrapper or key layout" in line
  assert not list(tmp_path.glob("g.*"))
  # The library refuses them too, in one line naming the output.
  with pytest.raises(CheckpointError, match="half.*for .onnx files only"):
    generator.export_generator(ckpt, tmp_path / "g.safetensors", half=True)
  with pytest.raises(CheckpointError, match="no state-dict wrapper"):
    generator.export_generator(ckpt, tmp_path / "g.onnx", wrap_key=None)
  assert not list(tmp_path.glob("g.*"))


def test_existing_output_is_refused_and_kept(tmp_path, capsys):
  ckpt, _ = _checkpoint(tmp_path, _span(2, False))
  out = tmp_path / "g.onnx"
  out.write_bytes(b"keep me")
  assert convert.main(["--export", str(ckpt), str(out), "--half"]) == 1
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines == [f"esrgan_jax: error: {out}: output file already exists"]
  assert out.read_bytes() == b"keep me"


def test_onnx_is_imported_only_to_export():
  code = ("import sys; import esrgan_jax.convert, esrgan_jax.upscale; "
          "sys.exit(any(m.split('.')[0] in ('onnx', 'onnxruntime') for m in sys.modules))")
  assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False).returncode == 0


def test_is_onnx_path():
  assert onnx_export.is_onnx_path("a/B.ONNX") and onnx_export.is_onnx_path("gs://b/g.onnx")
  assert not onnx_export.is_onnx_path("g.onnx.pth")
