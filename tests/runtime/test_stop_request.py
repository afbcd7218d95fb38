"""runtime/stop_request.py: the stop flag that training and video upscaling share."""

import signal
import threading

import pytest

from esrgan_jax.runtime.stop_request import StopRequest
from esrgan_jax.training import stop_request as training_stop


def test_the_latest_signal_decides_unless_the_first_does():
  for first_decides, kept, noticed in ((False, signal.SIGTERM, [signal.SIGINT, signal.SIGTERM]),
                                       (True, signal.SIGINT, [signal.SIGINT])):
    seen = []
    with StopRequest(seen.append, first_decides=first_decides) as stop:
      assert not stop.requested
      signal.raise_signal(signal.SIGINT)
      signal.raise_signal(signal.SIGTERM)
      assert stop.requested and stop.signal == kept and seen == noticed, first_decides
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_raises_without_a_notice_and_stopped_names_the_signal():
  seen = []
  with StopRequest(seen.append, signals=(signal.SIGINT,)) as stop:
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGINT]
    assert stop.stopped(" here").status == 130 and str(stop.stopped(" here")) == \
        "stopped by Ctrl-C here"
    stop.signal = signal.SIGTERM
    assert stop.stopped("").status == 143
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # never taken


def test_outside_the_main_thread_no_handler_is_installed():
  handlers = []
  def enter():
    with StopRequest(lambda signum: None):
      handlers.append(signal.getsignal(signal.SIGINT))
  thread = threading.Thread(target=enter)
  thread.start()
  thread.join()
  assert handlers == [signal.default_int_handler]


def test_training_takes_sigterm_in_a_single_process_run_and_logs_each_signal(caplog):
  with training_stop.stop_request() as stop:
    signal.raise_signal(signal.SIGTERM)
    assert stop.signal == signal.SIGTERM
  assert "signal 15: saving a checkpoint and stopping" in caplog.text
