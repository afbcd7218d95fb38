"""A workdir written before the package moved into rooms (commit 9ffb7e6) still loads and resumes.

tests/fixtures/gan_workdir_9ffb7e6 holds the GAN-stage checkpoint of `gan_config(num_steps=2)` as
that commit's trainer wrote it, and the SHA-256 of every leaf of its train state at step 2
(tests/fixtures/README.md says how both were made). Orbax stores the state by tree path, not by
module name, so moving train_state.py must not change what a checkpoint restores into.
"""

import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from esrgan_jax.training import train
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights
from tests import REPO_ROOT
from tests.training.test_train import fresh_state, gan_config, saved_steps, state_arrays

FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "gan_workdir_9ffb7e6")

pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _sha256(array: np.ndarray) -> list:
  return [str(array.dtype), list(array.shape),
          hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()]


@pytest.fixture(name="workdir")
def _workdir(tmp_path):
  """A copy, so that resuming writes nothing into the repository."""
  shutil.copytree(FIXTURE, tmp_path / "workdir")
  return str(tmp_path / "workdir")


def _expected() -> dict:
  with open(os.path.join(FIXTURE, "state_sha256.json"), encoding="utf-8") as f:
    return json.load(f)


def test_old_checkpoint_restores_bit_for_bit(workdir):
  manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
  state, step = checkpoints.restore_latest_good(manager, fresh_state(gan_config()),
                                                rename_damaged=False)
  assert step == 2
  restored = {key: _sha256(value) for key, value in state_arrays(state).items()}
  assert restored == _expected()
  # upscale, interpolate and convert read the EMA generator of the same step.
  params, arch = generator_weights.load_generator(workdir)
  ema = {key: value for key, value in _expected().items() if key.startswith(".generator_ema")}
  leaves = {".generator_ema" + jax.tree_util.keystr(path): _sha256(np.asarray(value))
            for path, value in jax.tree_util.tree_leaves_with_path(params)}
  assert leaves == ema
  assert arch["num_feat"] == 8 and arch["num_block"] == 1


def test_old_workdir_resumes_training(workdir):
  state = train.train_and_evaluate(gan_config(num_steps=3), workdir)
  assert int(state.step) == 3
  assert saved_steps(workdir) == [2, 3]  # a fresh start would have saved step 1 too
  assert all(np.isfinite(value).all() for value in state_arrays(state).values())
