"""benchmarks/fast_backends.py: the weights every backend loads, SPAN's prefolded torch form, the
one-function hook for another backend, and the onnxruntime backend that came in through it."""

import json
import types

import numpy as np
import pytest
import torch

from benchmarks import fast_backends, fast_models


def test_weights_take_torch_default_ranges():
  abstract = {"conv": {"kernel": np.zeros((3, 3, 4, 8)), "bias": np.zeros(8)},
              "act": {"weight": np.zeros(8)}}
  params = fast_backends.torch_like_params(abstract)
  bound = 1 / np.sqrt(3 * 3 * 4)
  for leaf in (params["conv"]["kernel"], params["conv"]["bias"]):
    assert leaf.dtype == np.float32 and np.abs(leaf).max() <= bound
    assert np.abs(leaf).max() > bound / 2
  assert (params["act"]["weight"] == 0.25).all()


def test_prefolded_span_runs_no_conv3xc_and_computes_the_same():
  from reference import torch_span  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  model = torch_span.SPAN(feature_channels=8).eval()
  folded = fast_backends.prefolded(model)
  assert not any(isinstance(m, torch_span.Conv3XC) for m in folded.modules())
  assert sum(isinstance(m, torch_span.Conv3XC) for m in model.modules()) == 20  # untouched
  x = torch.rand(1, 3, 6, 7)
  with torch.no_grad():
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-4)


def fake_backend(args, model, variants):
  """Two variants computing JAX's output with NumPy's help: one right, one off by 0.5."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  module = fast_backends.jax_module(model.network, model.options, jnp.float32)

  def output(image):
    return np.asarray(module.apply({"params": model.infer_params}, image))

  facts = dict(device="fake device", versions="fake 1.0")
  built = {"fake:fp32": fast_backends.Variant(lambda: None, lambda _: None, facts, output),
           "fake:off": fast_backends.Variant(lambda: None, lambda _: None, facts,
                                             lambda image: output(image) + 0.5)}
  return {v: built[v] for v in variants}


def test_a_backend_added_as_one_function_is_timed_checked_and_compared(
    monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(fast_backends.BACKENDS, "fake", (("fake:fp32", "fake:off"), fake_backend))
  monkeypatch.setenv("XLA_FLAGS", "")  # main() adds the trainer's flags; restored afterwards
  path = tmp_path / "rows.json"
  with pytest.raises(SystemExit) as exit_:
    fast_models.main(["--rows", "compact16", "--size", "4x6", "--frameworks", "jax:float32,fake",
                      "--steps", "1", "--warmup", "0", "--json", str(path)])
  assert exit_.value.code == 1  # fake:off is 0.5 away
  out = capsys.readouterr().out
  run = json.loads(path.read_text())
  assert [r["variant"] for r in run["results"]] == ["jax:float32", "fake:fp32", "fake:off"]
  right, off = run["checks"]
  assert "jax:float32 against fake:fp32: max |difference|" in right
  assert "jax:float32 against fake:off: max |difference| 0.5" in off
  assert run["failures"] == [off] and f"FAILED {off}" in out and f"FAILED {right}" not in out
  assert "Compact 16x64: jax:float32 / fake:fp32 throughput" in out
  assert "fake: fake device (fake 1.0)" in out


def test_onnxruntime_runs_the_exported_graph_and_agrees_with_jax(monkeypatch, tmp_path, capsys):
  monkeypatch.setenv("XLA_FLAGS", "")
  path = tmp_path / "rows.json"
  fast_models.main(["--rows", "compact16,span48", "--size", "4x6", "--frameworks",
                    "jax:float32,onnxruntime", "--steps", "1", "--warmup", "0", "--json", str(path)])
  run = json.loads(path.read_text())
  assert run["failures"] == []
  assert [(r["row"], r["variant"]) for r in run["results"]] == [
      ("compact16", "jax:float32"), ("compact16", "onnxruntime:fp32"),
      ("span48", "jax:float32"), ("span48", "onnxruntime:fp32")]
  assert len(run["checks"]) == 2
  assert all("jax:float32 against onnxruntime:fp32" in line for line in run["checks"])
  out = capsys.readouterr().out
  assert "SPAN 48: jax:float32 / onnxruntime:fp32 throughput" in out
  assert "(CPUExecutionProvider) (onnxruntime " in out


def test_onnxruntime_is_asked_for_by_name_and_skipped_on_cuda():
  assert "onnxruntime:fp32" not in fast_models.parse_args([]).variants
  assert fast_models.parse_args(["--frameworks", "onnxruntime"]).variants == ["onnxruntime:fp32"]
  args = types.SimpleNamespace(device="cuda")
  assert fast_backends.onnxruntime_variants(args, None, ["onnxruntime:fp32"]) == {}
