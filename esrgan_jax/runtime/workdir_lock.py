"""One command at a time per workdir: a lock file naming its holder.

Two runs on one workdir would resume from each other's checkpoints and write over each other's
later steps, config.json and eval_results.json. Training and eval mode therefore hold
WORKDIR/.esrgan_jax.lock while they run: JSON naming the host, PID, the process's start time
(Linux: /proc, so a reused PID is not taken for the holder), the command, when it started, and a
heartbeat time that a background thread refreshes every HEARTBEAT_S seconds.

Creating it is atomic where the filesystem offers create-if-absent: local paths and shared
POSIX filesystems (NFS v3+, Lustre, GPFS) through O_CREAT | O_EXCL. etils.epath offers no such
call for gs:// (or any other URL scheme), so there the lock is written, then read back after
SETTLE_S seconds: of two runs that raced, the one whose record was overwritten sees the other's
and backs off. Both could go on only if one took longer than SETTLE_S between finding no lock
and its write becoming visible, which GCS's strong read-after-write consistency makes unlikely
but does not rule out.

A lock is stale, and taken over with a warning, when its holder is on this host and no longer
runs (its PID is gone, or belongs to a process started at another time; a host is its name, so
containers sharing a workdir need distinct host names), or, on another host, when its heartbeat
is older than STALE_AFTER_S (the hosts' clocks are assumed to agree within minutes). A lock
that is not valid JSON is stale too (on a local path once it is SETTLE_S old: its writer may be
between creating and writing it). The lock is released at exit (normal, error, Ctrl-C,
SIGTERM); a kill -9 leaves it for the next run to take over. In a multi-process run process 0
holds it for all; the others learn from it whether it did and stop with the same line if not.
"""

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Iterator, Optional

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from esrgan_jax import cli

LOCK_NAME = ".esrgan_jax.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
SETTLE_S = 2.0


class WorkdirInUseError(cli.UserError):
  """Another live run holds the workdir's lock; the message names it."""


def lock_exists(workdir: str) -> bool:
  """Whether WORKDIR holds a lock file (live or stale); reads only."""
  return (epath.Path(workdir) / LOCK_NAME).exists()


def _process_start(pid: int) -> Optional[str]:
  """The start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      # The command name (field 2) may hold spaces; the fields after its ')' do not.
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _is_local(path: epath.Path) -> bool:
  return "://" not in str(path)


def _let_racers_write() -> None:
  """A run that found no lock when we did has written its record by now: the last one wins."""
  time.sleep(SETTLE_S)


def _seconds(record: dict[str, Any], key: str) -> float:
  """A time field of a record, 0 (long ago) when missing or not a number."""
  try:
    return float(record.get(key, 0))
  except (TypeError, ValueError):
    return 0.0


def _describe(record: dict[str, Any]) -> str:
  started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_seconds(record, "started")))
  return (f"{record.get('command', 'a run')} on host {record.get('host', '?')}, "
          f"PID {record.get('pid', '?')}, started {started}")


class WorkdirLock:
  """The lock of one workdir held by this process (see `acquire`)."""

  def __init__(self, workdir: str, command: str):
    self.path = epath.Path(workdir) / LOCK_NAME
    self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                   "process_start": _process_start(os.getpid()), "command": command,
                   "started": time.time(), "heartbeat": time.time(), "token": uuid.uuid4().hex}
    self._stop = threading.Event()
    self._heart: Optional[threading.Thread] = None

  # Reading and judging a lock file.

  def _is_mine(self) -> bool:
    try:
      record = self.read()[0]
    except FileNotFoundError:
      return False
    return record is not None and record.get("token") == self.record["token"]

  def read(self) -> tuple[Optional[dict[str, Any]], str]:
    """(record or None when it is not valid JSON, raw text); FileNotFoundError when absent."""
    text = self.path.read_text()
    try:
      record = json.loads(text)
    except ValueError:
      return None, text
    return (record if isinstance(record, dict) else None), text

  def _is_stale(self, record: Optional[dict[str, Any]]) -> bool:
    if record is None:  # not JSON: stale once nobody can still be writing it
      try:
        return not _is_local(self.path) or time.time() - os.path.getmtime(self.path) > SETTLE_S
      except OSError:
        return True
    if record.get("host") == self.record["host"]:
      pid = record.get("pid")
      if not isinstance(pid, int) or pid <= 0:
        return True
      try:
        os.kill(pid, 0)
      except ProcessLookupError:
        return True
      except PermissionError:  # alive, another user's
        pass
      started = record.get("process_start")
      current = _process_start(pid)
      return started is not None and current is not None and started != current
    return time.time() - _seconds(record, "heartbeat") > STALE_AFTER_S

  def in_use(self, record: Optional[dict[str, Any]]) -> WorkdirInUseError:
    workdir = self.path.parent
    if record is None:
      return WorkdirInUseError(f"--workdir={workdir} is being locked by another run ({self.path} "
                               "is being written); try again in a moment")
    remote = record.get("host") != self.record["host"]
    age = time.time() - _seconds(record, "heartbeat")
    how = (f"; if that run is dead the lock is taken over {STALE_AFTER_S / 60:.0f} min after its "
           f"last heartbeat ({age / 60:.0f} min ago), or remove {self.path}" if remote else "")
    if self.record["command"] == "evaluation":
      how += (f" (eval mode reads a running run's checkpoints with "
              f"--config.eval.checkpoint={workdir} and another --workdir)")
    return WorkdirInUseError(f"--workdir={workdir} is in use by {_describe(record)}; wait for it "
                             f"to end or choose another --workdir{how}")

  # Taking and giving back.

  def acquire(self) -> "WorkdirLock":
    """Takes the lock, taking over a stale one with a warning; WorkdirInUseError if held."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # each retry follows a race lost to another run taking over a stale lock
      if self._try_create():
        self._start_heartbeat()
        return self
      try:
        record, text = self.read()
      except FileNotFoundError:
        continue  # released meanwhile
      if not self._is_stale(record):
        raise self.in_use(record)
      logging.warning("--workdir=%s: taking over the lock of %s, which no longer runs (%s)",
                      self.path.parent, _describe(record) if record else "an unfinished lock",
                      self.path)
      self._remove_stale(text)
    raise self.in_use(None)

  def _try_create(self) -> bool:
    text = json.dumps(self.record)
    if _is_local(self.path):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      try:
        with os.fdopen(fd, "w") as f:
          f.write(text)
          f.flush()
          os.fsync(f.fileno())
      except OSError as error:  # a full disk: no half-written lock left behind
        os.remove(self.path)
        raise OSError(error.errno, error.strerror, str(self.path)) from None
      return True
    if self.path.exists():
      return False
    self.path.write_text(text)
    _let_racers_write()
    return self._is_mine()

  def _remove_stale(self, stale_text: str) -> None:
    """Removes the stale lock whose text was `stale_text`, unless another run replaced it."""
    if not _is_local(self.path):
      with contextlib.suppress(FileNotFoundError):
        if self.path.read_text() == stale_text:
          self.path.unlink()
      return
    # A rename has one winner: of two runs taking over the same stale lock, one moves it.
    aside = self.path.with_name(f"{LOCK_NAME}.stale-{self.record['token']}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    if aside.read_text() != stale_text:  # another run's fresh lock: put it back
      with contextlib.suppress(FileExistsError):
        os.link(aside, self.path)
    aside.unlink()

  def _start_heartbeat(self) -> None:
    self._heart = threading.Thread(target=self._beat, name="workdir_lock_heartbeat", daemon=True)
    self._heart.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        if not self._is_mine():
          logging.error("the lock %s is no longer this run's: another run took it over",
                        self.path)
          return
        self.record["heartbeat"] = time.time()
        if _is_local(self.path):  # whole, never half written
          partial = self.path.with_name(f"{LOCK_NAME}.{self.record['token']}")
          partial.write_text(json.dumps(self.record))
          os.replace(partial, self.path)
        else:
          self.path.write_text(json.dumps(self.record))
      except OSError as error:  # a full disk, a network hiccup: the next beat tries again
        logging.warning("could not refresh the lock %s: %s", self.path, error)

  def release(self) -> None:
    self._stop.set()
    if self._heart is not None:
      self._heart.join()
    with contextlib.suppress(OSError):
      if self._is_mine():
        self.path.unlink()


@contextlib.contextmanager
def held(workdir: str, command: str) -> Iterator[None]:
  """Holds WORKDIR's lock for `command` ('training', 'evaluation'); WorkdirInUseError if another
  live run holds it. Multi-process runs: process 0 takes it for all of them."""
  lock = WorkdirLock(workdir, command)
  if jax.process_count() == 1:
    lock.acquire()
  else:
    lock = _acquire_on_process_0(lock)
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


def _acquire_on_process_0(lock: WorkdirLock) -> Optional[WorkdirLock]:
  refusal = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except WorkdirInUseError as error:
      refusal = error
  taken = multihost_utils.broadcast_one_to_all(np.int32(refusal is None))
  if refusal is not None:
    raise refusal
  if not int(taken):  # process 0 was refused: the holder is in the (shared) lock file
    try:
      record = lock.read()[0]
    except FileNotFoundError:
      record = None
    raise lock.in_use(record)
  return lock if jax.process_index() == 0 else None
