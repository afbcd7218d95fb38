"""launch/tpu_vm.sh plans the run on worker 0 before training, and stops with the plan's line
when the config does not fit (the stand-ins of tests/project/test_launch_scripts.py play gcloud,
the worker and its python, whose `-m esrgan_jax.plan` says what STUB_PLAN_* tell it to)."""

import shutil

from tests.project.test_launch_scripts import (  # pylint: disable=unused-import
    TPU_VARIABLES, command_lines, flag, run_script, stand_ins)


def test_tpu_train_stops_with_the_plans_line_when_the_config_does_not_fit(stand_ins, tmp_path):
  worker_home = tmp_path / "worker"
  (worker_home / ".local" / "bin").mkdir(parents=True)
  shutil.copy(stand_ins.path / "uv", worker_home / ".local" / "bin" / "uv")
  refusal = "does not fit: needs 40.10 GiB per chip, 8.10 GiB more than the 32.00 GiB of a v4 chip"
  env = stand_ins.env(**TPU_VARIABLES, FAKE_WORKER_HOME=str(worker_home), STUB_PLAN_STATUS="3",
                      STUB_PLAN_LINE=refusal)
  assert run_script("tpu_vm.sh", "setup", env=env, timeout=120).returncode == 0
  result = run_script("tpu_vm.sh", "train", "--", "--config.train.batch_size=512", "--verbose",
                      env=env, timeout=30)
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1] == (
      f"tpu_vm.sh: error: not starting: configs/esrgan_psnr.py does not fit v4-32: {refusal}")
  assert "config    (the plan's report)" in result.stderr
  [planner] = [c for c in stand_ins.calls("python") if "esrgan_jax.plan" in c["argv"]]
  assert planner["argv"] == ["-m", "esrgan_jax.plan", "--config=configs/esrgan_psnr.py",
                             "--topology=v4-32", "--config.train.batch_size=512"]
  assert not [c for c in stand_ins.calls("python") if "esrgan_jax.main" in c["argv"]]
  ssh_workers = [flag(c["argv"], "--worker") for c in stand_ins.calls("gcloud")
                 if c["argv"][3] == "ssh"]
  assert ssh_workers == ["all", "0"]  # setup, then the plan on worker 0 only

  # --no-plan starts the trainer without asking (and without ACCELERATOR_TYPE).
  del env["ACCELERATOR_TYPE"]
  result = run_script("tpu_vm.sh", "--no-plan", "--dry-run", "train", env=env)
  assert result.returncode == 0, result.stderr
  [train] = command_lines(result.stdout)
  assert "esrgan_jax.main" in flag(train, "--command")
