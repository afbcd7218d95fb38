"""Entry point: `python -m esrgan_jax.main --config=configs/esrgan.py --workdir=DIR`.

Parses flags, starts multi-process JAX when launched that way, logs the topology, and dispatches
to training or to eval mode. Everything else lives in training/train.py and
evaluation/evaluate.py.

Exit status (esrgan_jax/cli.py's convention): 0 when training reached config.train.num_steps
(also when a rerun finds it already complete) or eval finished; 1 with one line
`esrgan_jax: error: ...` on stderr for a bad flag, config field or file (missing config file,
unwritable workdir, a workdir another run is using, unreadable images, damaged checkpoints), a
full disk or a non-finite loss -- main's flag errors stay 1, not argparse's 2, since absl parses
them together with the config file and its fields; 130 when Ctrl-C stopped training (after a
checkpoint); 143 (as for a process killed by SIGTERM) when a SIGTERM stopped training after a
checkpoint, so that scripts and schedulers do not take a preempted run for a finished one. The
same command resumes both. `--verbose` shows the start-up and Orbax lines that are hidden
otherwise.
"""

import contextlib
import logging as std_logging
import os
import signal
import sys
import warnings

from esrgan_jax import cli  # the standard library only

# What a Ctrl-C or SIGTERM outside the training loop (which saves first, then reports itself)
# leaves behind: nothing in either case, but the line says which work it interrupted.
_STOP_NOTE = [" before training started"]
# Ctrl-C and SIGTERM are recorded, not raised, until the imports below and in
# _train_or_evaluate are done: raised inside a C extension's import they are lost or leave it
# half initialised (then the process can crash at exit). Only when run as the command: a process
# that merely imports this module (tests, tools) keeps its own signal handling.
if __name__ == "__main__":
  cli.defer_stops(lambda: _STOP_NOTE[0])

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
from absl import app, flags, logging
from ml_collections import config_flags

# Only light modules here: the trainer and evaluator are imported once the config has passed its
# checks, since they pull in TensorFlow (clu's summary writers), seconds a typo should not cost.
from esrgan_jax import config_checks
from esrgan_jax.runtime import backends, parallel, workdir_lock, xla_flags
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/esrgan.py:demo",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory (local or gs://) for checkpoints and summaries.")
flags.DEFINE_enum("mode", None, ["train", "eval"], "Overrides config.mode.")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for multi-process runs "
                    "outside Cloud TPU and SLURM (or ESRGAN_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (or ESRGAN_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", -1, "This process's index (or ESRGAN_PROCESS_ID).")
flags.DEFINE_bool("verbose", False, "Also show TensorFlow, JAX and Orbax start-up and detail lines.")
flags.mark_flags_as_required(["config", "workdir"])

EXIT_STOPPED_BY_SIGNAL = cli.EXIT_TERMINATED


def fail(message: str) -> None:
  sys.exit(cli.error(message))


def _quiet_logs(verbose: bool) -> None:
  """Keeps the console to the trainer's own lines unless --verbose."""
  if verbose:
    return
  cli.quiet_tensorflow()
  for name in ("jax", "orbax", "tensorflow", "absl.flags"):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)
  warnings.filterwarnings("ignore", category=DeprecationWarning)


def _check_workdir(workdir: str) -> None:
  """Fails now, with one line (a UserError), if the workdir cannot be written."""
  if workdir.startswith("gs://"):
    return
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".esrgan_jax_write_test_{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as error:
    raise cli.UserError(
        f"--workdir={workdir}: cannot write there ({error.strerror or error})") from None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure reported as one line and exit status 1."""
  if any(arg in ("--help", "-h", "-?", "--helpshort", "--helpfull") for arg in argv[1:]):
    # absl's own --help exits 1; help that was asked for is a success.
    app.usage(shorthelp="--helpfull" not in argv, writeto_stdout=True, exitcode=cli.EXIT_OK)
  try:
    rest = FLAGS(argv)
    try:  # a get_config() that returned no ConfigDict, before any start-up line
      cli.loaded_config(argv, FLAGS["config"].value)
    except OSError:
      pass  # a file that failed to load: _load_config names it, as before
    return rest
  except cli.UserError as error:
    fail(str(error))
  except flags.Error as error:
    fail(cli.config_flag_error(argv, error))
  except (AttributeError, KeyError) as error:
    fail(cli.config_lookup_error(argv, error))
  except OSError as error:  # a missing or unreadable config file
    fail(f"{error.filename or argv}: {error.strerror or error}")
  except Exception as error:  # pylint: disable=broad-except; the config file's own code raised
    fail(cli.config_file_error(argv, error))


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Ctrl-C and SIGTERM before the loop takes them over (training/stop_request.py): nothing to
  # save yet.
  return cli.run(_start_and_run, stopped=lambda: _STOP_NOTE[0])


def _start_and_run() -> int:
  """Start-up, then `_train_or_evaluate`; a stop deferred so far acts at each stop point."""
  _quiet_logs(FLAGS.verbose)
  xla_flags.apply_defaults()
  cli.stop_point()
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id)
  backends.start_quietly()
  parallel.log_topology()
  if jax.process_count() > 1 and not jax.config.jax_enable_preemption_service:
    # Otherwise JAX's preemption service has taken SIGTERM over; without it, as before
    # defer_stops, SIGTERM kills the process (one process cannot stop alone mid-collective).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  cli.stop_point()
  return _train_or_evaluate()


def _load_config():
  """(config, mode); a missing config file is one line naming it."""
  try:
    config = cli.loaded_config(sys.argv, FLAGS.config)
    return config, FLAGS.mode or config.mode
  except OSError as error:  # ml_collections reports a missing config file only when it is read
    lines = [line.strip() for line in str(error).splitlines()]
    detail = next((line.split("] ", 1)[-1] for line in lines if "[Errno" in line), lines[0])
    raise cli.UserError(
        f"--config={config_flags.get_config_filename(FLAGS['config'])}: {detail}") from None


def _train_or_evaluate() -> int:
  """Eval mode, or training to config.train.num_steps: 0, or 143 when SIGTERM stopped it after a
  checkpoint. Every failure is a cli.UserError (one line) and Ctrl-C in the loop a cli.Stopped
  (stop_request.Interrupted), both of which cli.run reports."""
  config, mode = _load_config()
  if mode == "eval":
    _STOP_NOTE[0] = " during evaluation"
  config_checks.validate(config, jax.device_count(), mode)
  if mode != "eval":
    _check_workdir(FLAGS.workdir)
  cli.stop_point()
  from esrgan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from esrgan_jax.training import train  # pylint: disable=g-import-not-at-top
  from esrgan_jax.weights import orbax_logs  # pylint: disable=g-import-not-at-top
  cli.stop_deferring()  # the imports are done: a stop now raises where it lands
  if mode == "eval":
    # Nothing to evaluate is refused before the workdir is made (it stayed behind, empty); a
    # locked workdir is left to the lock, whose line names the run holding it.
    if not workdir_lock.lock_exists(FLAGS.workdir):
      evaluate.check_checkpoint(config, FLAGS.workdir)
    _check_workdir(FLAGS.workdir)
  if FLAGS.verbose:
    orbax_logs.show_orbax_logs(logging.get_absl_handler())
  # One command at a time per workdir: a second one would write over the first's steps.
  with workdir_lock.held(FLAGS.workdir, "evaluation" if mode == "eval" else "training"), \
      _disk_full_in_one_line(FLAGS.workdir):
    if mode == "eval":
      evaluate.run(config, FLAGS.workdir)
      return cli.EXIT_OK
    state = train.train_and_evaluate(config, FLAGS.workdir)
  if int(state.step) < config.train.num_steps:
    logging.warning("Training stopped at step %d of %d; the same command resumes it.",
                    int(state.step), config.train.num_steps)
    return EXIT_STOPPED_BY_SIGNAL
  if jax.process_index() == 0:
    logging.info("%s", "\n".join(written_lines(FLAGS.workdir, int(state.step))))
  return cli.EXIT_OK


def written_lines(workdir: str, step: int) -> list[str]:
  """The run's last lines: where its checkpoint, results, pictures and TensorBoard run are."""
  from esrgan_jax.evaluation import reports  # pylint: disable=g-import-not-at-top
  from esrgan_jax.weights import checkpoints  # pylint: disable=g-import-not-at-top
  saved = checkpoints.orbax_path(workdir) / checkpoints.CHECKPOINT_SUBDIR / str(step)
  lines = [f"Done at step {step}. Written in {workdir}:", f"  checkpoint   {saved}"]
  results = reports.results_dir(workdir)
  if (results / "eval_results.json").exists():
    pictures = sorted(p.name for p in results.glob("*_comparison.png"))
    lines += [f"  results      {results / 'eval_results.json'}",
              f"  pictures     {results}/ ({len(pictures)} LR | bicubic | SR | HR comparisons)"]
  lines.append(f"  TensorBoard  tensorboard --logdir {workdir}")
  return lines


@contextlib.contextmanager
def _disk_full_in_one_line(workdir: str):
  """A full disk wherever the trainer did not foresee it (TensorBoard's writer raises
  TensorFlow's ResourceExhaustedError): one line, like the checkpoints' own."""
  from esrgan_jax.training import failures  # pylint: disable=g-import-not-at-top
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    if isinstance(error, (cli.UserError, OSError)) or not failures.is_disk_full(error):
      raise
    raise failures.DiskFullError(
        f"no space left on device writing in {workdir}; free some and run the same command "
        "again (it resumes from the last checkpoint)") from None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
