"""python -m benchmarks.fast_models end to end at a tiny size (timings not checked), its agreement
check, its weights and its refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import fast_backends, fast_models
from tests import REPO_ROOT
from tests.usage_errors import assert_refused

# Inference-form parameters: Real-ESRGAN's x4plus RRDBNet, realesr-animevideov3 (16 convs) and
# realesr-general-x4v3 (32), and SPAN 48 folded (tests/models/test_span.py).
PARAMS = {"rrdb23x64": 16_697_987, "compact16": 621_424, "compact32": 1_213_296,
          "span48": 426_288}


def run(*args, timeout=600):
  return subprocess.run([sys.executable, "-m", "benchmarks.fast_models", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def test_tiny_run_writes_one_row_per_model_and_variant(tmp_path):
  path = tmp_path / "rows.json"
  result = run("--size", "8x12", "--steps", "1", "--warmup", "1", "--json", str(path))
  assert result.returncode == 0, result.stdout + result.stderr
  run_ = json.loads(path.read_text())
  assert run_["failures"] == [] and run_["args"]["size"] == "8x12"
  variants = {row: {r["variant"] for r in run_["results"] if r["row"] == row}
              for row in fast_models.MODELS}
  jax_torch = {"jax:float32", "jax:bfloat16", "torch:fp32"}
  assert variants == {"rrdb23x64": jax_torch, "compact16": jax_torch, "compact32": jax_torch,
                      "span48": jax_torch | {"torch:fp32:prefolded"}}
  output_mp = 8 * 4 * 12 * 4 / 1e6
  for r in run_["results"]:
    assert r["params"] == PARAMS[r["row"]], r
    assert r["size"] == "8x12" and r["platform"] == "cpu" and len(r["times"]) == 1
    assert r["seconds"] > 0
    assert r["frames_per_s"] == pytest.approx(1 / r["seconds"])
    assert r["mp_per_s"] == pytest.approx(output_mp / r["seconds"])
    assert ("compile_s" in r) == r["variant"].startswith("jax")
    assert r["clock"] == "wall"
  # One check per model and torch variant, each printed; the table has every row.
  assert len(run_["checks"]) == 5
  for line in run_["checks"]:
    assert line in result.stdout
  lines = result.stdout.splitlines()
  for r in run_["results"]:
    assert any(line.startswith(f"{r['model']:<15} {r['variant']:<22}") for line in lines), r
  assert "SPAN 48: jax:float32 / torch:fp32:prefolded throughput" in result.stdout
  assert "1/16 of 480x640" not in result.stdout  # said only at the CPU default size


def fake_built(jax_output, torch_output):
  return {"jax:float32": fast_backends.Variant(None, None, {}, lambda image: jax_output),
          "jax:bfloat16": fast_backends.Variant(None, None, {}),  # timed, never checked
          "torch:fp32": fast_backends.Variant(None, None, {}, lambda image: torch_output)}


@pytest.mark.parametrize("magnitude, difference, passes", [
    (1.0, 0.5e-3, True), (1.0, 2e-3, False),
    # Over max(1, largest output): SPAN's normalised outputs reach ~30.
    (30.0, 2e-2, True), (30.0, 4e-2, False), (0.1, 2e-3, False)])
def test_agreement_check_is_relative_to_outputs_over_one(magnitude, difference, passes):
  expected = np.full((1, 4, 4, 3), magnitude, np.float32)
  actual = expected.copy()
  actual[0, 1, 2, 0] += difference
  args = fast_models.parse_args([])
  lines, failures = fast_models.check_agreement(args, "span48", fake_built(expected, actual),
                                                np.zeros((1, 1, 1, 3), np.float32))
  assert len(lines) == 1 and "jax:float32 against torch:fp32" in lines[0]
  assert failures == ([] if passes else lines)


def test_a_failed_check_is_printed_and_exits_1(monkeypatch, capsys):
  def measure(args, row, image):
    line = f"check {row}: off"
    return [], [line], [line] if row == "compact16" else []
  monkeypatch.setattr(fast_models, "measure", measure)
  with pytest.raises(SystemExit) as exit_:
    fast_models.main(["--rows", "compact16,span48", "--size", "4x4"])
  assert exit_.value.code == 1
  assert "FAILED check compact16: off" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--rows", "esrgan"], "--rows: unknown row(s) ['esrgan']"),
    (["--frameworks", "jax:float16"], "--frameworks: unknown ['jax:float16']"),
    (["--size", "480"], "--size '480': expected HxW"),
    (["--steps", "0"], "--steps must be positive"),
    (["--device", "cuda", "--clock", "cpu"], "--clock cpu times the host")])
def test_refusals(args, message, capsys):
  assert_refused(fast_models.parse_args, args, message, capsys)


def test_defaults_take_traiNNer_redux_size_and_expand_the_frameworks():
  args = fast_models.parse_args([])
  assert (args.height, args.width) == (480, 640)  # traiNNer-redux's input, on every device
  assert args.variants == ["jax:float32", "jax:bfloat16", "torch:fp32", "torch:fp32:prefolded"]
  args = fast_models.parse_args(["--device", "cuda", "--frameworks", "torch,jax:bfloat16"])
  assert (args.height, args.width) == (480, 640)
  assert args.variants == ["jax:bfloat16", "torch:fp32", "torch:fp32:prefolded"]
  args = fast_models.parse_args(["--size", "120x160"])
  assert (args.height, args.width) == (120, 160)


def test_cpu_clock_times_the_process_cpu_seconds(monkeypatch, tmp_path, capsys):
  seconds = iter(range(100))  # a stand-in process clock: one CPU second a reading
  monkeypatch.setitem(fast_models.CLOCKS, "cpu", lambda: float(next(seconds)))
  monkeypatch.setenv("XLA_FLAGS", "")  # main() adds the trainer's flags; restored afterwards
  path = tmp_path / "rows.json"
  fast_models.main(["--rows", "compact16", "--size", "4x6", "--frameworks", "jax,torch",
                    "--steps", "2", "--warmup", "0", "--clock", "cpu", "--json", str(path)])
  run = json.loads(path.read_text())
  assert run["args"]["clock"] == "cpu"
  assert [r["variant"] for r in run["results"]] == ["jax:float32", "jax:bfloat16", "torch:fp32"]
  for r in run["results"]:
    assert r["clock"] == "cpu" and r["times"] == [1.0, 1.0] and r["frames_per_s"] == 1.0
  assert "Times are the process's CPU seconds per call" in capsys.readouterr().out


def test_tiny_runs_every_row_with_its_stand_in_network(tmp_path, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  path = tmp_path / "rows.json"
  fast_models.main(["--tiny", "--size", "4x6", "--frameworks", "jax:float32,torch:fp32",
                    "--steps", "1", "--warmup", "0", "--json", str(path)])
  run = json.loads(path.read_text())
  assert run["failures"] == [] and run["args"]["tiny"] and len(run["checks"]) == 4
  labels = {r["row"]: r["model"] for r in run["results"]}
  assert labels == {row: label for row, (label, _) in fast_models.TINY_MODELS.items()}
  # Stand-ins, not the 0.4M-17M parameter networks: the gpu_suite test runs them on 2 cores.
  assert all(r["params"] < 20_000 for r in run["results"]), run["results"]
  assert fast_models.model_spec("span48") == fast_models.MODELS["span48"]
