"""benchmarks/benchmark.py --arch: the L1 train-step rows of Compact and SPAN, JAX against the
same PyTorch module, end to end at a tiny size (timings not checked), and its refusals."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import benchmark, common, jax_rows, torch_rows
from tests import REPO_ROOT
from tests.usage_errors import assert_refused

TINY = {"compact": ["--num_conv", "2", "--num_feat", "8"], "span": ["--feature_channels", "8"]}


@pytest.mark.parametrize("arch", ["compact", "span"])
def test_jax_and_torch_train_the_same_generator(arch):
  args = benchmark.parse_args(["--arch", arch, "--sizes", "2x32", *TINY[arch]])
  assert args.rows == ["psnr"]  # the fast architectures' default
  _, (state, _, _), _ = jax_rows.jax_row_program(args, common.parse_group("jax:float32"), "psnr",
                                                 concrete=False)
  jax_count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.generator))
  module = torch_rows.torch_generator(args)
  assert type(module).__name__ == {"compact": "SRVGGNetCompact", "span": "SPAN"}[arch]
  # SPAN's eval_conv is refolded from the branches; training never reads it.
  torch_count = sum(p.numel() for name, p in module.named_parameters() if "eval_conv" not in name)
  assert jax_count == torch_count > 0


@pytest.mark.parametrize("arch, clock, title", [
    ("compact", "wall", "x4 Compact 2 convs x 8 feat (PReLU)"), ("span", "cpu", "x4 SPAN 8")])
def test_tiny_train_rows_of_a_fast_architecture(arch, clock, title, tmp_path):
  path = tmp_path / "rows.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.benchmark", "--arch", arch, *TINY[arch],
       "--rows", "grad,psnr", "--sizes", "2x32", "--steps", "1", "--warmup", "1", "--interleave",
       "--groups", "jax:float32,torch:fp32", "--clock", clock, "--json", str(path)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout + result.stderr
  run = json.loads(path.read_text())
  assert not run["failures"] and run["args"]["arch"] == arch
  assert {r["clock"] for r in run["results"]} == {clock}
  cpu_note = "; times: the process's CPU seconds (--clock cpu)"
  assert (cpu_note in result.stdout) == (clock == "cpu")
  rows = {(r["group"], r["size"]) for r in run["results"]}
  assert rows == {(group, size) for group in ("jax:float32", "torch:fp32")
                  for size in ("grad:2x32", "psnr:2x32")}
  assert all(r["unit"] == "img/s" and r["rate"] > 0 for r in run["results"])
  assert run["flops"]["psnr:2x32"] > run["flops"]["grad:2x32"] > 0
  assert f"\n{title}; train: batch x HR patch 2x32; median of 1 after 1 warm-up" in result.stdout
  assert "JAX / PyTorch throughput" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--arch", "span", "--rows", "psnr,gan"],
     "--rows: --arch span takes ['grad', 'psnr'], not ['gan']"),
    (["--arch", "compact", "--rows", "infer"],
     "--arch compact takes ['grad', 'psnr'], not ['infer']"),
    (["--arch", "esrgan"], "argument --arch: invalid choice: 'esrgan'"),
    (["--arch", "compact", "--num_conv", "0"], "--num_conv, --feature_channels"),
    (["--arch", "span", "--feature_channels", "0"], "must be positive")])
def test_refusals(argv, message, capsys):
  assert_refused(benchmark.parse_args, argv, message, capsys)


def test_rrdbnet_defaults_and_flops_cache_keys_stay_as_they_were():
  args = benchmark.parse_args([])
  assert args.arch == "rrdbnet" and args.rows == ["psnr", "gan", "infer"]
  args.flops_cache = "cache"
  assert (benchmark.flops_cache_path(args, "psnr:16x128")
          == "cache/psnr_16x128_b23_f64_g32_d64_i1x256.json")
  compact = benchmark.parse_args(["--arch", "compact"])
  compact.flops_cache = "cache"
  assert benchmark.flops_cache_path(compact, "psnr:16x128").endswith("_compact_n32_c48.json")
  assert common.model_label(args) == "RRDBNet 23 blocks x 64 feat (grow 32)"
