"""esrgan_jax/cli.py: the exit convention every command shares, with real signals."""

import os
import signal

import pytest

from esrgan_jax import cli
from esrgan_jax.data import images


def test_run_turns_each_outcome_into_its_status_and_one_line(capsys):
  assert cli.run(lambda: "done") == cli.EXIT_OK
  assert capsys.readouterr().out == "done\n"
  assert cli.run(lambda: 7) == 7

  def fails():
    raise cli.UserError("config.x: must be\n  positive")

  assert cli.run(fails) == cli.EXIT_ERROR
  assert capsys.readouterr().err == "esrgan_jax: error: config.x: must be positive\n"

  def interrupted():
    raise KeyboardInterrupt

  assert cli.run(interrupted) == cli.EXIT_INTERRUPTED
  assert capsys.readouterr().err == "esrgan_jax: stopped by Ctrl-C\n"


def test_sigterm_during_a_write_removes_the_partial_file_and_exits_143(tmp_path, capsys):
  target = tmp_path / "out.bin"
  previous_handler = signal.getsignal(signal.SIGTERM)

  def write_then_get_terminated():
    with images.local_file_written_whole(str(target)) as f:
      f.write(b"half of it")
      os.kill(os.getpid(), signal.SIGTERM)
      f.write(b" and the rest")  # never reached: the handler raises at the next bytecode
    return "finished"

  assert cli.run(write_then_get_terminated) == cli.EXIT_TERMINATED
  assert capsys.readouterr().err == "esrgan_jax: stopped by SIGTERM\n"
  assert list(tmp_path.iterdir()) == []
  assert signal.getsignal(signal.SIGTERM) is previous_handler


def test_sigterm_outside_sigterm_raises_keeps_the_callers_handler():
  seen = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
  try:
    with cli.sigterm_raises():
      with pytest.raises(cli.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGTERM]
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_run_reports_an_unforeseen_os_error_by_its_file(capsys):
  def missing():
    open("/nonexistent/esrgan_jax_input.png", "rb")

  assert cli.run(missing) == cli.EXIT_ERROR
  assert capsys.readouterr().err == ("esrgan_jax: error: /nonexistent/esrgan_jax_input.png: "
                                     "No such file or directory\n")

  def bare():
    raise OSError("device busy")

  assert cli.run(bare) == cli.EXIT_ERROR
  assert capsys.readouterr().err == "esrgan_jax: error: device busy\n"


def test_run_maps_the_whole_user_error_family(capsys):
  # A subclass with another builtin base is still one line and exit status 1.
  def unwritable():
    raise images.ImageWriteError("out.png: cannot write image: read-only")

  assert cli.run(unwritable) == cli.EXIT_ERROR
  assert capsys.readouterr().err == "esrgan_jax: error: out.png: cannot write image: read-only\n"


def test_the_stop_note_can_follow_the_actions_phase(capsys):
  # main's note: " before training started" until eval mode begins, then " during evaluation".
  phase = [" before training started"]

  def evaluating_then_interrupted():
    phase[0] = " during evaluation"
    raise KeyboardInterrupt

  assert cli.run(evaluating_then_interrupted, stopped=lambda: phase[0]) == cli.EXIT_INTERRUPTED
  assert capsys.readouterr().err == "esrgan_jax: stopped by Ctrl-C during evaluation\n"

  def terminated_at_start():
    raise cli.Terminated

  phase[0] = " before training started"
  assert cli.run(terminated_at_start, stopped=lambda: phase[0]) == cli.EXIT_TERMINATED
  assert capsys.readouterr().err == "esrgan_jax: stopped by SIGTERM before training started\n"


def test_a_stop_the_action_made_prints_its_own_line_and_status(capsys):
  def saved_then_stopped():
    raise cli.Stopped("stopped by Ctrl-C at step 7; the same command resumes")

  assert cli.run(saved_then_stopped, stopped=" before training started") == cli.EXIT_INTERRUPTED
  assert capsys.readouterr().err == ("esrgan_jax: stopped by Ctrl-C at step 7; the same command "
                                     "resumes\n")

  def terminated():
    raise cli.Stopped("stopped by SIGTERM at step 3", cli.EXIT_TERMINATED)

  assert cli.run(terminated) == cli.EXIT_TERMINATED


def test_run_without_sigterm_leaves_the_callers_handler():
  seen = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
  try:
    def signalled():
      os.kill(os.getpid(), signal.SIGTERM)
      return "finished"

    assert cli.run(signalled, sigterm=False) == cli.EXIT_OK
    assert seen == [signal.SIGTERM]
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_deferred_stops_raise_at_stop_points_then_where_they_land():
  previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    cli.defer_stops(" before training started")
    os.kill(os.getpid(), signal.SIGINT)  # recorded only: an import under way finishes
    with pytest.raises(KeyboardInterrupt):
      cli.stop_point()
    cli.stop_point()  # acted on once
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(cli.Terminated):
      cli.stop_deferring()
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)  # no longer deferred: raised at once
    # A stop whose exception something swallowed is raised again at the next stop point.
    try:
      os.kill(os.getpid(), signal.SIGTERM)
    except cli.Terminated:
      pass
    with pytest.raises(cli.Terminated):
      cli.stop_point()
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
