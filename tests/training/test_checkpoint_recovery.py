"""A damaged latest checkpoint: training resumes from the step before and ends as if unbroken."""

import glob
import os
import shutil

import jax
import numpy as np
import pytest

from esrgan_jax.training import train
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("finished"))
  state = train.train_and_evaluate(psnr_config(num_steps=4), workdir)
  assert saved_steps(workdir) == [2, 4]
  return workdir, state_arrays(state)


@pytest.mark.parametrize("damage", [truncate, zero, delete_metadata])
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
