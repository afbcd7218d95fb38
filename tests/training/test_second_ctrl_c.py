"""Ctrl-C twice in the training loop: the second stops at once, saves first, and is no error."""

import logging as std_logging
import os
import signal

import pytest

from esrgan_jax.training import stop_request, train
from esrgan_jax.weights import checkpoints
from tests.training.test_train import patch_train_iterator, psnr_config, saved_steps

pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def test_a_second_ctrl_c_during_the_stop_save_saves_and_says_so(tmp_path, monkeypatch, caplog):
  """The first Ctrl-C (during step 2's input) asks the loop to save and stop; the second lands
  as that save starts, which is then made by the crash save."""
  def ctrl_c_at_step_2(step, batch):
    if step == 1:
      os.kill(os.getpid(), signal.SIGINT)
    return batch

  save, saves = checkpoints.save, []

  def second_ctrl_c_at_the_first_save(*args, **kwargs):
    saves.append(1)
    if len(saves) == 1:
      os.kill(os.getpid(), signal.SIGINT)  # raises KeyboardInterrupt right here
    return save(*args, **kwargs)

  config = psnr_config(num_steps=50)
  config.train.checkpoint_every_steps = 50
  patch_train_iterator(monkeypatch, ctrl_c_at_step_2)
  monkeypatch.setattr(checkpoints, "save", second_ctrl_c_at_the_first_save)
  caplog.set_level(std_logging.WARNING)
  with pytest.raises(stop_request.Interrupted) as stopped:
    train.train_and_evaluate(config, str(tmp_path))
  messages = [record.getMessage() for record in caplog.records]
  step = stopped.value.step
  assert saved_steps(str(tmp_path)) == [step] and 1 <= step < 10
  assert f"Training stopped by a second Ctrl-C: saved step {step} first." in messages, messages
  assert not any("error" in message for message in messages), messages
