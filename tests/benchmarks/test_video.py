"""python -m benchmarks.video --tiny end to end (timings not checked): one row per size, scale,
model and dtype, with model-only, end-to-end and codec rates; and its refusals."""

import json

import pytest

from benchmarks import video as benchmark


def test_tiny_run_writes_every_row_with_its_rates(tmp_path, capsys):
  path = tmp_path / "rows.json"
  benchmark.main(["--tiny", "--scales", "2", "--json", str(path)])
  run = json.loads(path.read_text())
  assert run["failures"] == []
  assert [(r["size"], r["scale"], r["row"], r["dtype"]) for r in run["results"]] == [
      ("tiny", 2, "compact16", "float32"), ("tiny", 2, "span48", "float32")]
  # Tiny stand-ins, not Compact 16x64's 0.6M parameters: the gpu_suite test runs this on 2 cores.
  assert [r["model"] for r in run["results"]] == ["Compact 2x8", "SPAN 8"]
  assert all(r["params"] < 20_000 for r in run["results"]), run["results"]
  out = capsys.readouterr().out
  for r in run["results"]:
    assert r["input"] == "24x32" and r["frames"] == 4 and r["platform"] == "cpu"
    for rate in ("model_fps", "e2e_fps", "decode_fps", "encode_fps"):
      assert r[rate] > 0, (rate, r)
    assert r["e2e_realtime"] == pytest.approx(r["e2e_fps"] / 24)
    assert r["e2e_over_model"] == pytest.approx(r["e2e_fps"] / r["model_fps"])
    assert benchmark.line(r) in out
  assert benchmark.HEADER in out


def test_the_cpu_plan_and_bad_rows_are_parsed(capsys):
  args = benchmark.parse_args([])
  assert args.plan[0] == (["480p"], [4, 2], ["compact16", "compact32", "span48"])
  assert ("1080p" in args.plan[2][0]) and args.dtypes == ["float32", "bfloat16"]
  with pytest.raises(SystemExit):
    benchmark.parse_args(["--sizes", "480p", "--rows", "nonesuch"])
  assert "unknown sizes, rows or scales: ['nonesuch']" in capsys.readouterr().err
