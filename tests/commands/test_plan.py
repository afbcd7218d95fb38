"""python -m esrgan_jax.plan: a tiny config compiled for real TPU slices with libtpu (installed
from requirements-tpu.txt), on this CPU; fits, does not fit, the largest batch, one-line errors.
"""

import contextlib
import os
import subprocess
import sys

import jax
import pytest

from esrgan_jax import plan
from esrgan_jax.data import pipeline
from esrgan_jax.runtime import flops as flops_lib
from esrgan_jax.runtime import tpu_plan
from esrgan_jax.training import steps
from esrgan_jax.training.state import build_networks, state_initializer
from tests import REPO_ROOT

TINY = ["--config=configs/esrgan_psnr.py", "--config.model.num_feat=8",
        "--config.model.num_block=1", "--config.model.num_grow_ch=4",
        "--config.data.patch_size=32", "--config.train.batch_size=16"]


def run_plan(*args, env=None):
  return subprocess.run([sys.executable, "-m", "esrgan_jax.plan", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=600, env=env)


def test_prints_the_compiled_steps_own_memory_and_flops(monkeypatch, capsys):
  """v5litepod-16: 16 chips on 4 hosts. Every printed figure is the executable's."""
  compiled = []
  compile_step = plan.compile_step
  monkeypatch.setattr(plan, "compile_step",
                      lambda *a: compiled.append(compile_step(*a)) or compiled[-1])
  assert plan.main([*TINY, "--topology=v5litepod-16"]) == 0
  lines = capsys.readouterr().out.splitlines()
  stats = compiled[0].executable.memory_analysis()
  size = tpu_plan.format_bytes
  total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
           - stats.alias_size_in_bytes + stats.temp_size_in_bytes
           + stats.generated_code_size_in_bytes)
  # FLOPs are training's count (runtime/flops.py): the lowered step on the global batch.
  config = plan.load_config(TINY[0].split("=", 1)[1], TINY[1:])
  networks = build_networks(config)
  init_fn = state_initializer(networks, config)
  arguments = (jax.eval_shape(init_fn, jax.random.key(0, impl=config.prng_impl)),
               {k: jax.ShapeDtypeStruct(*spec) for k, spec in pipeline.global_batch_spec(
                   config.data, scale=4, global_batch_size=16).items()},
               jax.eval_shape(lambda: jax.random.key(0, impl=config.prng_impl)))
  flops = flops_lib.lowered_flops(jax.jit(steps.make_train_step(networks, config)).lower(
      *arguments))
  assert lines[1] == ("slice     v5e:4x4: 16 chips (TPU v5 lite) on 4 host(s), 16.00 GiB of HBM "
                      "per chip (a v5e chip's HBM)")
  assert lines[2] == "batch     16 per step: 1 per chip, 4 per host, in 1 micro-batch(es)"
  assert lines[3] == (
      f"per chip  arguments {size(stats.argument_size_in_bytes)}, outputs "
      f"{size(stats.output_size_in_bytes)} ({size(stats.alias_size_in_bytes)} of them in donated "
      f"arguments), temporaries {size(stats.temp_size_in_bytes)}, code "
      f"{size(stats.generated_code_size_in_bytes)}")
  assert lines[4].split() == ["total", size(total).split()[0], size(total).split()[1], "of",
                              "16.00", "GiB", f"({total / 2**34:.0%})"]
  assert lines[5] == (f"FLOPs     {flops:.3e} per step ({flops / 16:.3e} per chip), "
                      f"{flops / 16:.3e} per image")
  assert lines[-1] == (f"fits: {size(total)} of the 16.00 GiB per chip, "
                       f"{size(2**34 - total)} to spare")


def test_does_not_fit_exits_3_with_one_line_saying_by_how_much():
  """A multi-host v4 slice, two micro-batches per step, planned against 1 MiB per chip."""
  result = run_plan(*TINY, "--config.train.grad_accum_steps=2", "--topology=v4-16",
                    f"--hbm_gib={1 / 1024}")
  assert result.returncode == 3, result.stderr
  assert result.stderr == ""
  lines = result.stdout.splitlines()
  assert lines[1].startswith("slice     v4:2x2x2: 8 chips (TPU v4) on 2 host(s), 1.00 MiB")
  assert lines[2] == "batch     16 per step: 2 per chip, 8 per host, in 2 micro-batch(es)"
  needed = lines[4].split()[1:3]
  assert lines[-1].startswith(f"does not fit: needs {' '.join(needed)} per chip, ")
  assert lines[-1].endswith(" more than the 1.00 MiB of --hbm_gib")
  assert all(line.startswith(("config ", "slice ", "batch ", "per chip ", "     ", "FLOPs ",
                              "compile ", "does not fit")) for line in lines)


def test_max_batch_searches_the_per_chip_batch():
  result = run_plan(*TINY, "--topology=v5e:2x2", "--max_batch", "--max_batch_limit=2")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [line.split(":")[0] for line in lines if line.startswith("per-chip batch")] == [
      "per-chip batch 1", "per-chip batch 2"]
  assert "batch     8 per step: 2 per chip, 8 per host, in 1 micro-batch(es)" in lines
  assert lines[-1].startswith("largest per-chip batch that fits: 2 (--max_batch_limit; raise it "
                              "to look further); --config.train.batch_size=8, ")


def test_without_libtpu_one_line_says_how_to_install_it(tmp_path):
  # An importable `libtpu` that raises ImportError stands for a machine without the package.
  (tmp_path / "libtpu.py").write_text("raise ImportError('No module named libtpu')\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO_ROOT]))
  result = run_plan(*TINY, "--topology=v5e:2x2", env=env)
  assert result.returncode == 1
  assert result.stdout == ""
  assert result.stderr.splitlines() == [
      "esrgan_jax: error: libtpu is not installed, and plan needs it to compile for TPUs: "
      "pip install -r requirements-tpu.txt"]


@pytest.mark.parametrize("args, status, message", [
    (["--topology=v5e:3x3"], 1, "esrgan_jax: error: --topology=v5e:3x3: libtpu cannot lay out"),
    (["--topology=v5e:4x4", "--config.train.batch_size=8"], 1,
     "esrgan_jax: error: config.train.batch_size=8 must be a positive multiple of the device "
     "count (16)"),
    (["--topology=v5e:2x2", "--config.train.nope=1"], 1,
     "esrgan_jax: error: --config.train.nope=1: config.train has no field 'nope'"),
    (["--topology=v5e:2x2", "--max_batch_limit=0"], 1,
     "esrgan_jax: error: --max_batch_limit=0: must be positive"),
    (["--topology=v5e:2x2", "--hbm_gib=nan"], 1,  # was a ValueError traceback (issue #27)
     "esrgan_jax: error: --hbm_gib=nan: must be a positive, finite number of GiB"),
    (["--topology=v5e:2x2", "--hbm_gib=inf"], 1,
     "esrgan_jax: error: --hbm_gib=inf: must be a positive, finite number of GiB"),
    (["--topology=v5e:2x2", "--hbm_gib=0"], 1,
     "esrgan_jax: error: --hbm_gib=0.0: must be a positive, finite number of GiB"),
    (["--topology=v5e:2x2", "--verbose"], 2, "python -m esrgan_jax.plan: error: unrecognized "
     "arguments: --verbose"),
    ([], 2, "python -m esrgan_jax.plan: error: the following arguments are required: --topology"),
])
def test_errors_are_one_line(args, status, message, capsys):
  with pytest.raises(SystemExit) if status == 2 else contextlib.nullcontext():
    assert plan.main([*TINY, *args]) == status
  err = capsys.readouterr().err.splitlines()
  assert err[-1].startswith(message), err
  assert status == 2 or len(err) == 1


def test_help_names_the_exit_statuses(capsys):
  with pytest.raises(SystemExit) as caught:
    plan.main(["--help"])
  assert caught.value.code == 0
  out = " ".join(capsys.readouterr().out.split())
  assert "exit status: 0 the config fits" in out
  assert "3 it does not, with one line saying by how much" in out
  assert "libtpu missing: how to install it" in out


def test_the_plan_checks_the_config_but_looks_up_none_of_its_files():
  """A config written for the pod's disks plans anywhere: its fields are checked, its paths not."""
  config = plan.load_config("configs/esrgan.py", [
      "--config.data.dataset=folder", "--config.data.hr_dir=/pod/disk/hr",
      "--config.generator_init=gs://bucket/psnr", "--config.loss.vgg19_weights=/pod/vgg19",
      "--config.eval.lpips_weights=/pod/lpips"])
  config.data.eval_sets = {"set5": {"hr_dir": "/pod/set5"}}
  checked = plan.checked(config, 4, 8)
  assert checked.train.batch_size == 8 and checked.data.hr_dir == "/pod/disk/hr"
  with pytest.raises(plan.config_checks.ConfigError, match="multiple of the device count"):
    plan.checked(config, 4, 6)
