"""`python -m esrgan_jax.main` as a user runs it: bad configs, the README's commands, SIGTERM.

Subprocesses, since the command line, exit statuses and signals are what is tested. The models
are shrunk with --config overrides (the same ones on both stages, whose architectures must
match); everything else is the demo configs as the README runs them.
"""

import json
import os
import signal
import subprocess
import sys
import threading

from tests import REPO_ROOT
TINY_MODEL = ["--config.model.num_feat=8", "--config.model.num_block=1",
              "--config.model.num_grow_ch=4", "--config.data.eval_max_images=1",
              "--config.eval.num_comparison_images=1"]
PSNR_DEMO = ["--config=configs/esrgan_psnr.py:demo", *TINY_MODEL]
GAN_DEMO = ["--config=configs/esrgan.py:demo", *TINY_MODEL, "--config.discriminator.num_feat=4",
            "--config.loss.perceptual_layers={'conv1_2': 1.0}"]


def command(*args) -> list[str]:
  return [sys.executable, "-m", "esrgan_jax.main", *args]


def environment(num_devices: int = 1) -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1", PYTHONPATH=REPO_ROOT)
  env.pop("XLA_FLAGS", None)
  if num_devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  return env


def start(args, num_devices: int = 1) -> subprocess.Popen:
  return subprocess.Popen(command(*args), cwd=REPO_ROOT, env=environment(num_devices),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
  stdout, stderr = process.communicate(timeout=timeout)
  return process.returncode, stdout, stderr


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("esrgan_jax: error:")]


def assert_one_line_error(returncode: int, stderr: str, expected: str) -> None:
  assert returncode == 1, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-2000:]
  lines = error_lines(stderr)
  assert len(lines) == 1 and expected in lines[0], stderr[-2000:]


def saved_steps(workdir) -> list[int]:
  path = os.path.join(workdir, "checkpoints")
  return sorted(int(name) for name in os.listdir(path) if name.isdigit())


BAD_CONFIGS = {
    "unknown field": (["--config.train.bogus=1"], 1,
                      "--config.train.bogus=1: config.train has no field 'bogus'"),
    "patch not divisible by scale": (["--config.data.patch_size=30"], 1,
                                     "config.data.patch_size=30 must be a positive multiple of 4"),
    "batch not divisible by devices": (["--config.train.batch_size=6"], 4,
                                       "config.train.batch_size=6 must be a positive multiple "
                                       "of the device count (4)"),
    "unknown dense block": (["--config.model.dense_block=sparse"], 1,
                            "config.model.dense_block must be one of ('concat', 'fused', 'auto')"),
    "missing stage-1 checkpoint": (["--config=configs/esrgan.py:demo",
                                    "--config.generator_init=/nonexistent"], 1,
                                   "config.generator_init: /nonexistent does not exist"),
    "misspelt section": (["--config.trian.batch_size=2"], 1,
                         "config has no field 'trian' (Did you mean \"train\""),
    "unknown variant": (["--config=configs/esrgan_psnr.py:nosuchvariant"], 1,
                        "unknown variant 'nosuchvariant'"),
}


def test_bad_configs_fail_with_one_line_before_compiling(tmp_path):
  # All at once: each spends most of its time importing.
  runs = {}
  for name, (args, num_devices, _) in BAD_CONFIGS.items():
    config = [] if any(a.startswith("--config=") for a in args) else PSNR_DEMO[:1]
    workdir = str(tmp_path / name.replace(" ", "_"))
    runs[name] = (workdir, start([*config, f"--workdir={workdir}", *args], num_devices))
  for name, (workdir, process) in runs.items():
    returncode, _, stderr = finish(process, timeout=120)
    assert_one_line_error(returncode, stderr, BAD_CONFIGS[name][2])
    # JAX_LOG_COMPILES logs every XLA compilation.
    assert "XLA compilation" not in stderr, f"{name}: compiled before failing"
    assert not os.path.exists(os.path.join(workdir, "checkpoints")), name


def test_readme_commands_stop_resume_and_evaluate(tmp_path):
  psnr_dir, gan_dir = str(tmp_path / "psnr"), str(tmp_path / "gan")

  # Stage 1 with far more steps than it will run: SIGTERM after its first logged step.
  process = start([*PSNR_DEMO, f"--workdir={psnr_dir}", "--config.train.num_steps=100000",
                   "--config.train.log_every_steps=1"])
  watchdog = threading.Timer(240, process.kill)  # never hang the suite
  watchdog.start()
  stderr_lines, signalled = [], False
  for line in process.stderr:
    stderr_lines.append(line)
    if "l_pix " in line and not signalled:  # the first progress line
      process.send_signal(signal.SIGTERM)
      signalled = True
  watchdog.cancel()
  process.wait(timeout=120)
  stderr = "".join(stderr_lines)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  steps = saved_steps(psnr_dir)
  assert len(steps) == 1 and steps[0] >= 1, steps
  stopped_at = steps[0]
  assert f"Stopped at step {stopped_at} of 100000" in stderr

  # The same command, now for two more steps, resumes from the checkpoint.
  returncode, _, stderr = finish(start([*PSNR_DEMO, f"--workdir={psnr_dir}",
                                        f"--config.train.num_steps={stopped_at + 2}"]))
  assert returncode == 0, stderr[-3000:]
  assert f"Resumed from step {stopped_at}" in stderr
  assert saved_steps(psnr_dir)[-1] == stopped_at + 2

  # Stage 2 from stage 1's workdir.
  returncode, _, stderr = finish(start([*GAN_DEMO, f"--workdir={gan_dir}",
                                        f"--config.generator_init={psnr_dir}",
                                        "--config.train.num_steps=2"]))
  assert returncode == 0, stderr[-3000:]
  assert f"Generator initialised from {psnr_dir}" in stderr
  # Each long wait is named before it starts; the last lines say what was written where.
  for before, after in (("Initialising the gan state on 1 device(s)...",
                         "Compiling the gan step..."),
                        ("Compiling the gan step...", "Compiled the gan step: "),
                        ("Evaluating step 2 on bundled (1 images)...", "step 2 evaluation:")):
    assert 0 <= stderr.find(before) < stderr.find(after), stderr[-3000:]
  lines = stderr.splitlines()
  assert lines[-5].endswith(f"Done at step 2. Written in {gan_dir}:"), stderr[-3000:]
  assert lines[-4:] == [
      f"  checkpoint   {gan_dir}/checkpoints/2",
      f"  results      {gan_dir}/eval/eval_results.json",
      f"  pictures     {gan_dir}/eval/ (1 LR | bicubic | SR | HR comparisons)",
      f"  TensorBoard  tensorboard --logdir {gan_dir}"], stderr[-3000:]
  assert not [f for f in os.listdir(os.path.join(gan_dir, "eval"))
              if f.startswith("events.out.tfevents")]  # the one run is gan_dir's own
  for workdir, last_step in ((psnr_dir, stopped_at + 2), (gan_dir, 2)):
    assert last_step in saved_steps(workdir)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir)), workdir
    results = json.loads(open(os.path.join(workdir, "eval", "eval_results.json")).read())
    assert results["checkpoint"] == f"training step {last_step} (EMA)"
    assert "psnr_y" in results["sets"]["bundled"]["mean"]

  # Eval mode on stage 2's workdir, and with a config of another scale.
  eval_dir = str(tmp_path / "eval_run")
  evaluation = start([*GAN_DEMO, f"--workdir={eval_dir}", "--mode=eval",
                      f"--config.eval.checkpoint={gan_dir}"])
  wrong_scale = start([*GAN_DEMO, f"--workdir={gan_dir}", "--mode=eval",
                       "--config.model.scale=2"])
  returncode, stdout, stderr = finish(evaluation)
  assert returncode == 0, stderr[-3000:]
  assert "psnr_y" in stdout and "bundled" in stdout
  # Eval mode writes under the checkpoint's own step, apart from a training run's eval/.
  step_dirs = os.listdir(os.path.join(eval_dir, "eval_mode"))
  step_dirs = [d for d in step_dirs if d.startswith("step_")]
  assert len(step_dirs) == 1 and not os.path.exists(os.path.join(eval_dir, "eval")), step_dirs
  out_dir = os.path.join(eval_dir, "eval_mode", step_dirs[0])
  results = json.loads(open(os.path.join(out_dir, "eval_results.json")).read())
  assert results["checkpoint"].startswith(gan_dir)
  image = results["sets"]["bundled"]["images"]
  assert len(image) == 1
  pictures = [f for f in os.listdir(out_dir) if f.endswith(".png")]
  assert pictures == [f"bundled_{name}_comparison.png" for name in image]
  returncode, _, stderr = finish(wrong_scale)
  assert_one_line_error(returncode, stderr, "checkpoint is a x4 model but config.model.scale "
                        "is 2")


def test_eval_mode_without_a_checkpoint_is_refused_before_making_the_workdir(tmp_path):
  untrained, elsewhere = tmp_path / "untrained", tmp_path / "elsewhere"
  missing = tmp_path / "missing_checkpoint"
  runs = [start([*PSNR_DEMO, f"--workdir={untrained}", "--mode=eval"]),
          start([*PSNR_DEMO, f"--workdir={elsewhere}", "--mode=eval",
                 f"--config.eval.checkpoint={missing}"])]
  expected = [f"{untrained}: no training checkpoint found; eval mode reads a trained "
              "workdir, or --config.eval.checkpoint=DIR",
              f"config.eval.checkpoint: {missing} does not exist"]
  for run, line in zip(runs, expected):
    returncode, _, stderr = finish(run, timeout=120)
    assert_one_line_error(returncode, stderr, line)
    assert "XLA compilation" not in stderr
  assert not untrained.exists() and not elsewhere.exists()
