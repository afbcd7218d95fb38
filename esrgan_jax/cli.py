"""What every `python -m esrgan_jax.X` command shares: exit statuses, the one-line error, flags.

One convention for every command, printed at the end of each `--help`:
  0    done
  1    an error, reported as one line `esrgan_jax: error: ...` naming the file, flag or field
  2    a malformed command line (unknown or missing flag, a value of the wrong type)
  130  stopped by Ctrl-C (training saves a checkpoint first; the same command resumes)
  143  stopped by SIGTERM (likewise)
"""

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import traceback
from typing import Callable, Sequence, Union

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + 2
EXIT_TERMINATED = 128 + 15

EXIT_STATUS_HELP = (
    "exit status: 0 done; 1 an error, reported as one line 'esrgan_jax: error: ...' naming the "
    "file, flag or field at fault; 2 a malformed command line (unknown or missing flag); "
    "130 stopped by Ctrl-C; 143 stopped by SIGTERM.")


class UserError(Exception):
  """An error whose message names the file, flag or field at fault; shown as one line.

  The root of every user-facing error of the package (bad configs, images, weights files,
  checkpoints, a full disk, ...): `run` maps the whole family to EXIT_ERROR. Subclasses keep a
  builtin base (ValueError, OSError, ...) where callers catch them that way.
  """


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the field (`config.data.hr_dir: ...`).

  Here rather than in config_checks.py so that training and evaluation, which find the few
  faults that need the data itself, raise it without importing the validator above them.
  """


class Stopped(Exception):
  """A stop the action made cleanly (training saved a checkpoint first); `run` prints its
  message as `esrgan_jax: <message>` and exits with `status`."""

  def __init__(self, message: str, status: int = EXIT_INTERRUPTED):
    super().__init__(message)
    self.status = status


class Terminated(BaseException):
  """SIGTERM, raised in the main thread like KeyboardInterrupt (see `sigterm_raises`)."""


# The stop signal received and not yet acted on, and whether stops are deferred (`defer_stops`).
_stops = {"pending": None, "deferring": False, "note": ""}


def _stop_exception(signum: int) -> BaseException:
  return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _on_stop_signal(signum, frame):
  del frame
  if _stops["deferring"]:
    if _stops["pending"] is not None:  # asked twice while deferred: stop now
      _exit_now(signum)
    _stops["pending"] = signum
    return
  # Also kept: an exception raised inside a C extension's callback (JAX's gc callback, an
  # extension module's init) is swallowed there; `stop_point` raises it again.
  _stops["pending"] = signum
  raise _stop_exception(signum)


def _exit_now(signum: int) -> None:
  """The second stop signal while stops are deferred (a start-up that hangs): nothing written
  yet needs finishing, and os._exit skips interpreter finalisation, which can crash while
  native threads run."""
  name, status = ("Ctrl-C", EXIT_INTERRUPTED) if signum == signal.SIGINT else (
      "SIGTERM", EXIT_TERMINATED)
  os.write(2, f"esrgan_jax: stopped by {name}{_note(_stops['note'])}\n".encode())
  os._exit(status)  # pylint: disable=protected-access


def defer_stops(note: Union[str, Callable[[], str]] = "") -> None:
  """From now on Ctrl-C and SIGTERM are only recorded, raised at each `stop_point` and at
  `stop_deferring`.

  For a command's start-up: KeyboardInterrupt raised inside the import of a C extension or a gc
  callback is lost (the run goes on) or leaves the extension half initialised, and the process
  can then crash at exit (exit 139). A second signal while deferred exits at once with the stop
  line ending with `note`. Main thread only.
  """
  if threading.current_thread() is not threading.main_thread():
    return
  _stops.update(pending=None, deferring=True, note=note)
  signal.signal(signal.SIGINT, _on_stop_signal)
  signal.signal(signal.SIGTERM, _on_stop_signal)


def stop_point() -> None:
  """Raises a stop received while deferred, or one whose exception something swallowed."""
  pending, _stops["pending"] = _stops["pending"], None
  if pending is not None:
    raise _stop_exception(pending)


def stop_deferring() -> None:
  """Ends `defer_stops`: a stop received meanwhile raises now, later ones where they land."""
  _stops["deferring"] = False
  stop_point()


@contextlib.contextmanager
def _stops_raise(signums):
  """Within it, each of `signums` raises its exception (KeyboardInterrupt, Terminated) in the
  main thread, unless stops are deferred; the previous handlers come back on exit."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {signum: signal.signal(signum, _on_stop_signal) for signum in signums}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def sigterm_raises():
  """Within it, SIGTERM raises Terminated instead of killing the process on the spot.

  SIGTERM's default action skips every `finally`, so a write in progress would leave its
  temporary file behind; as an exception it unwinds like Ctrl-C does, removing it. Outside the
  main thread (where no handler can be set) this does nothing. The previous handler comes back
  on exit, so in-process callers (tests, the trainer) keep theirs.
  """
  return _stops_raise([signal.SIGTERM])


def quiet_tensorflow() -> None:
  """Keeps TensorFlow's start-up lines off the console; call before anything imports it (clu's
  TensorBoard writers do). TF 2.21 prints its oneDNN notice through absl logging, which
  TF_CPP_MIN_LOG_LEVEL no longer filters; TensorFlow computes nothing here (it writes TensorBoard
  events), so its oneDNN kernels are not needed. A user's own settings win."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def error(message: str) -> int:
  """Prints the one-line error and returns EXIT_ERROR, for `return cli.error(...)` in main()."""
  print(f"esrgan_jax: error: {message}", file=sys.stderr)
  return EXIT_ERROR


# JAX keys hold a 32-bit seed (x64 off): 2**32 would give seed 0's numbers, -1 those of 2**32 - 1.
SEED_RANGE = (0, 2**32 - 1)


def seed(value: str) -> int:
  """argparse type of a --seed flag: an integer in SEED_RANGE."""
  try:
    number = int(value)
  except ValueError:
    number = None
  if number is None or not SEED_RANGE[0] <= number <= SEED_RANGE[1]:
    raise argparse.ArgumentTypeError(f"must be an integer from {SEED_RANGE[0]} to "
                                     f"{SEED_RANGE[1]}, got {value!r}")
  return number


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """An argparse parser with the shared epilog; argparse itself exits 2 on a malformed line."""
  return argparse.ArgumentParser(
      prog=f"python -m {prog}", description=description, epilog=EXIT_STATUS_HELP,
      formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)


def flag(name: str, *short: str) -> Sequence[str]:
  """Real-ESRGAN's spelling (`--tile_pad`) first, the hyphen spelling (`--tile-pad`) as an alias,
  so scripts written for either keep working."""
  names = [*short, f"--{name}"]
  if "_" in name:
    names.append(f"--{name.replace('_', '-')}")
  return names


def _missing_key(error: Exception) -> tuple[str, str]:
  """(key, hint) of ml_collections' AttributeError(KeyError("'b'\nDid you mean ...")); the hint
  is '' or ' (Did you mean ...)'."""
  detail = error
  while isinstance(detail, BaseException) and detail.args:
    detail = detail.args[0]
  lines = str(detail).splitlines() or [""]
  hint = f" ({lines[1].strip()})" if len(lines) > 1 else ""
  return lines[0].strip("'\""), hint


def unknown_config_field(argv: list[str], error: Exception) -> str:
  """Names the `--config.a.b=...` argument whose path the config does not have.

  ml_collections raises AttributeError(KeyError("'b'\nDid you mean ...")) while parsing it.
  """
  key, hint = _missing_key(error)
  for arg in argv[1:]:
    path = arg[len("--config."):].split("=", 1)[0].split(".")
    if arg.startswith("--config.") and key in path:
      parent = ".".join(["config", *path[:path.index(key)]])
      return f"{arg}: {parent} has no field {key!r}{hint}"
  return f"unknown config field {key!r}{hint}"


def config_lookup_error(argv: Sequence[str], error: Exception) -> str:
  """An AttributeError or KeyError while the config was parsed, as one line: the override that
  names a field the config lacks, or else the config file's own fault (no get_config, or a field
  its own code read that its config lacks, with the line)."""
  line = unknown_config_field(list(argv), error)
  if line.startswith("--config."):
    return line
  if "has no attribute 'get_config'" in str(error):
    return (f"--config={_config_path(argv)}: defines no get_config() (a config file's "
            "get_config() returns its ml_collections.ConfigDict)")
  if isinstance(error, AttributeError) and error.args and isinstance(error.args[0], KeyError):
    key, hint = _missing_key(error)
    return f"{_config_where(argv, error)}: no config field {key!r}{hint}"
  return config_file_error(argv, error)


def loaded_config(argv: Sequence[str], config):
  """absl's --config value once read: a file that failed to load raises its error here (an
  OSError); a get_config() that returned no ConfigDict is a UserError naming the file."""
  import ml_collections  # pylint: disable=import-outside-toplevel; main imports cli before it
  if not isinstance(config, ml_collections.ConfigDict):
    getattr(config, "keys", None)  # ml_collections' stand-in for a failed load raises here
    raise UserError(f"--config={_config_path(argv)}: get_config() returned a value of type "
                    f"{type(config).__name__}, not an ml_collections.ConfigDict")
  return config


def nested_error_line(message: str) -> str:
  """absl wraps errors raised while loading a config file with their whole traceback."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    lines = [line for line in lines if not line.startswith(("During handling", "The above"))]
    return lines[-1]
  return lines[0] if lines else message


def config_flag_error(argv: Sequence[str], error: Exception) -> str:
  """absl's flags.Error while the config flags were parsed, as one line: a bad override value as
  absl words it, or the error the config file's own code raised with the file and its line (absl
  gives that one as a traceback in the message)."""
  message = str(error)
  line = nested_error_line(message)
  if not message.startswith("flag --config=") or "Traceback" not in message:
    return line
  path = _config_path(argv)
  real = os.path.realpath(path)
  where = ""
  for match in re.finditer(r'File "([^"]+)", line (\d+)', message):
    if os.path.realpath(match.group(1)) == real:
      where = f", line {match.group(2)}"
  return f"--config={path}{where}: {line}"


def config_file_error(argv: Sequence[str], error: BaseException) -> str:
  """A config file that raised while it was loaded (a SyntaxError, a NameError in get_config):
  the file, the line and the error, for one line instead of ml_collections' traceback."""
  message = error.msg if isinstance(error, SyntaxError) else str(error)
  return f"{_config_where(argv, error)}: {type(error).__name__}: {message}"


def _config_where(argv: Sequence[str], error: BaseException) -> str:
  """'--config=FILE, line N': the line of FILE where `error` was raised ('--config=FILE' when
  no line of it is on the traceback)."""
  path = _config_path(argv)
  line = None
  if isinstance(error, SyntaxError):
    line = error.lineno
  else:
    real = os.path.realpath(path)
    for frame in traceback.extract_tb(error.__traceback__):
      if os.path.realpath(frame.filename) == real:
        line = frame.lineno
  return f"--config={path}" + (f", line {line}" if line else "")


def _config_path(argv: Sequence[str]) -> str:
  """The file of argv's --config (less a :variant), or '?'."""
  path = "?"
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      path = arg[len("--config="):]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
  return path.split(":", 1)[0]  # configs/x.py:variant


def _note(stopped: Union[str, Callable[[], str]]) -> str:
  return stopped() if callable(stopped) else stopped


def run(action: Callable[[], Union[str, int]], stopped: Union[str, Callable[[], str]] = "",
        sigterm: bool = True) -> int:
  """A command's work under the convention. `action` returns a line to print (then 0) or its own
  exit status; a UserError, or an OSError nothing turned into one, becomes one error line (1);
  a Stopped its own line and status; Ctrl-C one line and 130; SIGTERM one line and 143, each line
  ending with `stopped` (what a stop leaves behind; a callable is asked at the stop, for actions
  whose phases leave different things behind). Files the action writes whole
  (data/images.local_file_written_whole) are either complete or absent after a stop.
  sigterm=False leaves SIGTERM's handler alone (multi-process training: JAX's preemption service
  owns it)."""
  try:
    with _stops_raise([signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])):
      result = action()
  except UserError as caught:
    return error(" ".join(str(caught).split()))  # one line, whatever the cause said
  except OSError as caught:  # what no module foresaw still names its file
    where = f"{caught.filename}: " if caught.filename else ""
    return error(" ".join(f"{where}{caught.strerror or caught}".split()))
  except Stopped as caught:
    print(f"esrgan_jax: {caught}", file=sys.stderr)
    return caught.status
  except KeyboardInterrupt:
    print(f"esrgan_jax: stopped by Ctrl-C{_note(stopped)}", file=sys.stderr)
    return EXIT_INTERRUPTED
  except Terminated:
    print(f"esrgan_jax: stopped by SIGTERM{_note(stopped)}", file=sys.stderr)
    return EXIT_TERMINATED
  finally:
    # Acted on (or the action finished regardless); a start-up that ended early (a config
    # error) leaves no deferral behind for whatever this process runs next.
    _stops.update(pending=None, deferring=False)
  if isinstance(result, int):
    return result
  print(result)
  return EXIT_OK
