"""A damaged latest checkpoint: training resumes from the step before and ends as if unbroken."""

import glob
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from esrgan_jax.training import train
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
from tests import REPO_ROOT
from tests.training.test_train import psnr_config, saved_steps, state_arrays

pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _largest_array_file(step_dir: str) -> str:
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
  return max(files, key=os.path.getsize)


def truncate(step_dir):
  path = _largest_array_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def zero(step_dir):
  path = _largest_array_file(step_dir)
  size = os.path.getsize(path)
  with open(path, "wb") as f:
    f.write(b"\0" * size)


def delete_metadata(step_dir):
  os.remove(os.path.join(step_dir, "state", "_METADATA"))


def empty_metrics(step_dir):
  open(os.path.join(step_dir, "metrics", "metrics"), "w").close()


def garbage_metrics(step_dir):
  with open(os.path.join(step_dir, "metrics", "metrics"), "w") as f:
    f.write("\x00{not json")


def delete_meta(step_dir):
  os.remove(os.path.join(step_dir, "meta", "metadata"))


def garbage_manifest(step_dir):
  with open(os.path.join(step_dir, "state", "manifest.ocdbt"), "wb") as f:
    f.write(b"garbage\n")


def truncate_every_file(step_dir):
  for folder, _, files in os.walk(step_dir):
    for name in files:
      os.truncate(os.path.join(folder, name), 0)


# What each damage is reported as, on the warning's one line.
REASONS = {empty_metrics: "metrics/metrics is empty",
           garbage_metrics: "metrics/metrics is not JSON",
           delete_meta: "meta/metadata is missing", truncate_every_file: "meta/metadata is empty",
           delete_metadata: "state/_METADATA is missing"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("finished"))
  state = train.train_and_evaluate(psnr_config(num_steps=4), workdir)
  assert saved_steps(workdir) == [2, 4]
  return workdir, state_arrays(state)


@pytest.mark.parametrize("damage", [truncate, zero, delete_metadata, empty_metrics,
                                    garbage_metrics, delete_meta, truncate_every_file,
                                    garbage_manifest])
def test_training_resumes_past_a_damaged_latest_checkpoint(damage, finished_run, tmp_path,
                                                           caplog):
  source, expected = finished_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
  damage(os.path.join(checkpoint_dir, "4"))
  caplog.set_level("WARNING")
  state = train.train_and_evaluate(psnr_config(num_steps=4), workdir)
  warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(warnings) == 1 and "checkpoint step 4 in" in warnings[0], warnings
  assert "resuming from step 2" in warnings[0] and "\n" not in warnings[0]
  assert REASONS.get(damage, "") in warnings[0]
  # Kept under another name, and step 4 written again from step 2.
  assert os.path.isdir(os.path.join(checkpoint_dir, "4" + checkpoints.DAMAGED_SUFFIX))
  assert saved_steps(workdir) == [2, 4]
  actual = state_arrays(state)
  assert actual.keys() == expected.keys()
  assert all(np.array_equal(actual[k], expected[k]) for k in expected)


def test_every_step_damaged_is_one_error_and_nothing_is_renamed(finished_run, tmp_path):
  source, _ = finished_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
  for step in ("2", "4"):
    delete_metadata(os.path.join(checkpoint_dir, step))
  with pytest.raises(checkpoints.CheckpointDamagedError, match="no saved step restores") as error:
    train.train_and_evaluate(psnr_config(num_steps=4), workdir)
  assert "\n" not in str(error.value)
  assert sorted(os.listdir(checkpoint_dir)) == ["2", "4"]


def test_readers_of_a_workdir_skip_a_damaged_latest_step(finished_run, tmp_path, caplog):
  """generator_init, eval mode and upscale read the newest step that reads, renaming nothing."""
  source, _ = finished_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
  expected, _ = generator_weights.load_generator(os.path.join(checkpoint_dir, "2"))
  delete_metadata(os.path.join(checkpoint_dir, "4"))
  caplog.set_level("WARNING")
  params, _ = generator_weights.load_generator(workdir)
  warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(warnings) == 1 and os.path.join(checkpoint_dir, "4") in warnings[0], warnings
  assert "state/_METADATA is missing" in warnings[0]
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(got, want)
  assert sorted(os.listdir(checkpoint_dir)) == sorted(os.listdir(os.path.join(source, "checkpoints")))

  delete_metadata(os.path.join(checkpoint_dir, "2"))
  with pytest.raises(generator_weights.CheckpointError) as error:
    generator_weights.load_generator(workdir)
  assert "unreadable training checkpoint" in str(error.value) and "\n" not in str(error.value)


def test_eval_mode_evaluates_the_newest_readable_step(finished_run, tmp_path, caplog):
  from esrgan_jax.evaluation import evaluate  # pylint: disable=import-outside-toplevel
  source, _ = finished_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  delete_metadata(os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR, "4"))
  caplog.set_level("WARNING")
  config = psnr_config(num_steps=4)
  config.mode = "eval"
  evaluate.run(config, workdir)
  assert any("is damaged" in r.getMessage() for r in caplog.records)
  assert os.path.isfile(os.path.join(workdir, evaluate.EVAL_MODE_SUBDIR, "step_2",
                                     "eval_results.json"))


def test_readers_and_training_share_one_rule_for_meta_and_metrics(finished_run, tmp_path, caplog):
  """A step without its meta, or with garbled metrics, is damaged for readers too."""
  source, _ = finished_run
  expected, _ = generator_weights.load_generator(
      os.path.join(source, checkpoints.CHECKPOINT_SUBDIR, "2"))
  caplog.set_level("WARNING")
  for damage in (delete_meta, garbage_metrics, truncate_every_file):
    workdir = str(tmp_path / damage.__name__)
    shutil.copytree(source, workdir)
    damage(os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR, "4"))
    caplog.clear()
    params, _ = generator_weights.load_generator(workdir)
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and REASONS[damage] in warnings[0], warnings
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(got, want)


_RESTORE_AS = """
import sys
from esrgan_jax import cli
from esrgan_jax.training import train
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
from tests import REPO_ROOT
from tests.training.test_train import fresh_state, psnr_config

def restore():
  if sys.argv[2] == "training":
    manager = checkpoints.create_manager(sys.argv[1], keep=5)
    checkpoints.restore_latest_good(manager, fresh_state(psnr_config()))
  else:
    generator_weights.load_generator(sys.argv[1])
  return "restored"

sys.exit(cli.run(restore))
"""


def test_a_step_this_user_may_not_read_is_refused_and_not_moved(finished_run, tmp_path):
  """A permission is not damage: one line naming the folder, for training and readers alike.
  Root reads everything, so as root the readers run without the capabilities that let it."""
  source, _ = finished_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
  state_dir = os.path.join(checkpoint_dir, "4", "state")
  os.chmod(state_dir, 0)
  as_plain_user = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
                   if os.geteuid() == 0 else [])
  try:
    runs = [subprocess.Popen([*as_plain_user, sys.executable, "-c", _RESTORE_AS, workdir, reader],
                             cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for reader in ("training", "upscale")]
    for run in runs:
      _, stderr = run.communicate(timeout=300)
      errors = [line for line in stderr.splitlines() if line.startswith("esrgan_jax: error:")]
      assert run.returncode == 1 and len(errors) == 1, stderr[-3000:]
      assert errors[0].startswith(f"esrgan_jax: error: {state_dir}: permission denied"), errors
      assert "Traceback" not in stderr and "is damaged" not in stderr, stderr[-3000:]
    assert sorted(os.listdir(checkpoint_dir)) == ["2", "4"]
  finally:
    os.chmod(state_dir, 0o755)
