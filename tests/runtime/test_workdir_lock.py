"""runtime/workdir_lock.py: one holder per workdir, named in the refusal; stale locks taken over.

The holder is a real second process where it matters (a live PID, then a killed one); the
other-host and gs:// cases write the records such a holder would leave.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from esrgan_jax.runtime import workdir_lock
from tests import REPO_ROOT

_HOLDER = """
import sys, time
from esrgan_jax.runtime import workdir_lock
workdir_lock.WorkdirLock(sys.argv[1], "training").acquire()
print("held", flush=True)
time.sleep(600)
"""


def _lock_file(workdir) -> str:
  return os.path.join(workdir, workdir_lock.LOCK_NAME)


def _write_record(workdir, **fields) -> None:
  record = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": None,
            "command": "training", "started": time.time(), "heartbeat": time.time(),
            "token": "someone-else"}
  record.update(fields)
  with open(_lock_file(workdir), "w") as f:
    json.dump(record, f)


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path, caplog):
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], cwd=REPO_ROOT,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT), stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(workdir_lock.WorkdirInUseError) as refused:
      workdir_lock.WorkdirLock(str(tmp_path), "evaluation").acquire()
    message = str(refused.value)
    assert "\n" not in message
    assert (f"--workdir={tmp_path} is in use by training on host {socket.gethostname()}, "
            f"PID {holder.pid}, started ") in message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # Killed: its lock stays behind, and the next run takes it over with a warning.
  assert os.path.exists(_lock_file(tmp_path))
  caplog.set_level("WARNING")
  lock = workdir_lock.WorkdirLock(str(tmp_path), "evaluation").acquire()
  warnings = [r.getMessage() for r in caplog.records if "taking over the lock" in r.getMessage()]
  assert len(warnings) == 1 and f"PID {holder.pid}" in warnings[0], warnings
  assert json.load(open(_lock_file(tmp_path)))["pid"] == os.getpid()
  lock.release()
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stop", [ValueError, KeyboardInterrupt])
def test_held_releases_at_an_error_or_a_stop(tmp_path, stop):
  with pytest.raises(stop):
    with workdir_lock.held(str(tmp_path), "training"):
      assert os.path.exists(_lock_file(tmp_path))
      raise stop
  assert os.listdir(tmp_path) == []


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
  # This process's PID with another start time: the holder died and its PID went to us.
  _write_record(tmp_path, process_start="1")
  workdir_lock.WorkdirLock(str(tmp_path), "training").acquire().release()
  # The same PID and start time: a live holder.
  started = workdir_lock._process_start(os.getpid())  # pylint: disable=protected-access
  _write_record(tmp_path, process_start=started)
  with pytest.raises(workdir_lock.WorkdirInUseError):
    workdir_lock.WorkdirLock(str(tmp_path), "training").acquire()


def test_another_hosts_lock_is_stale_once_its_heartbeat_is_old(tmp_path, caplog):
  _write_record(tmp_path, host="elsewhere", pid=1, heartbeat=time.time() - 60)
  with pytest.raises(workdir_lock.WorkdirInUseError) as refused:
    workdir_lock.WorkdirLock(str(tmp_path), "training").acquire()
  assert "on host elsewhere, PID 1" in str(refused.value)
  assert "taken over 10 min after its last heartbeat (1 min ago)" in str(refused.value)
  _write_record(tmp_path, host="elsewhere", pid=1,
                heartbeat=time.time() - workdir_lock.STALE_AFTER_S - 1)
  caplog.set_level("WARNING")
  workdir_lock.WorkdirLock(str(tmp_path), "training").acquire().release()
  assert any("taking over the lock of training on host elsewhere" in r.getMessage()
             for r in caplog.records)


def test_a_half_written_lock_waits_then_is_stale(tmp_path):
  with open(_lock_file(tmp_path), "w") as f:
    f.write('{"host": ')
  with pytest.raises(workdir_lock.WorkdirInUseError, match="is being written"):
    workdir_lock.WorkdirLock(str(tmp_path), "training").acquire()
  old = time.time() - workdir_lock.SETTLE_S - 1
  os.utime(_lock_file(tmp_path), (old, old))
  workdir_lock.WorkdirLock(str(tmp_path), "training").acquire().release()
  assert os.listdir(tmp_path) == []


def test_the_heartbeat_is_refreshed_while_held(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "HEARTBEAT_S", 0.05)
  lock = workdir_lock.WorkdirLock(str(tmp_path), "training").acquire()
  first = json.load(open(_lock_file(tmp_path)))["heartbeat"]
  time.sleep(0.5)
  assert json.load(open(_lock_file(tmp_path)))["heartbeat"] > first
  lock.release()
  assert os.listdir(tmp_path) == []


def test_without_create_if_absent_the_last_writer_wins(tmp_path, monkeypatch):
  """gs:// and other URL paths: written, then read back after SETTLE_S."""
  monkeypatch.setattr(workdir_lock, "_is_local", lambda path: False)
  monkeypatch.setattr(workdir_lock, "SETTLE_S", 0.0)
  lock = workdir_lock.WorkdirLock(str(tmp_path), "training").acquire()
  with pytest.raises(workdir_lock.WorkdirInUseError, match=f"PID {os.getpid()}"):
    workdir_lock.WorkdirLock(str(tmp_path), "evaluation").acquire()
  lock.release()
  assert os.listdir(tmp_path) == []

  # Two runs that both found no lock: the one whose record was overwritten backs off.
  loser = workdir_lock.WorkdirLock(str(tmp_path), "evaluation")
  monkeypatch.setattr(workdir_lock, "_let_racers_write",
                      lambda: _write_record(tmp_path, command="training"))
  with pytest.raises(workdir_lock.WorkdirInUseError, match="in use by training"):
    loser.acquire()


_TWO_PROCESSES = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from esrgan_jax.runtime import workdir_lock
try:
  with workdir_lock.held(sys.argv[3], "training"):
    print("held", flush=True)
except workdir_lock.WorkdirInUseError as error:
  print("refused:", error, flush=True)
"""


def test_in_a_multi_process_run_process_0_takes_it_for_all(tmp_path):
  free, taken = tmp_path / "free", tmp_path / "taken"
  free.mkdir()
  taken.mkdir()
  started = workdir_lock._process_start(os.getpid())  # pylint: disable=protected-access
  _write_record(taken, process_start=started)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT)
  runs = {}
  for workdir in (free, taken):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    runs[workdir] = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESSES, coordinator, str(i),
                                       str(workdir)], cwd=REPO_ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for i in range(2)]
  outputs = {workdir: [[line for line in p.communicate(timeout=300)[0].splitlines()
                        if line.startswith(("held", "refused"))] for p in procs]
             for workdir, procs in runs.items()}  # Gloo prints to stdout too
  assert outputs[free] == [["held"], ["held"]], outputs
  assert not os.path.exists(_lock_file(free))
  for lines in outputs[taken]:  # both stop, both naming the holder
    assert len(lines) == 1 and lines[0].startswith("refused: "), outputs
    assert f"PID {os.getpid()}" in lines[0], outputs
