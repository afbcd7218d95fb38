"""Entry point: `python -m esrgan_jax.main --config=configs/esrgan.py --workdir=DIR`.

Parses flags, starts multi-process JAX when launched that way, logs the topology, and dispatches
to training or to eval mode. Everything else lives in train.py and evaluate.py.

Exit status (esrgan_jax/cli.py's convention): 0 when training reached config.train.num_steps
(also when a rerun finds it already complete) or eval finished; 1 with one line
`esrgan_jax: error: ...` on stderr for a bad flag, config field or file (missing config file,
unwritable workdir, unreadable images, damaged checkpoints), a full disk or a non-finite loss --
main's flag errors stay 1, not argparse's 2, since absl parses them together with the config
file and its fields; 130 when Ctrl-C stopped training (after a checkpoint); 143 (as for a process
killed by SIGTERM) when a SIGTERM stopped training after a checkpoint, so that scripts and
schedulers do not take a preempted run for a finished one. The same command resumes both.
`--verbose` shows the start-up and Orbax lines that are hidden otherwise.
"""

import logging as std_logging
import os
import sys
import warnings

import jax
from absl import app, flags, logging
from ml_collections import config_flags

# Only light modules here: the trainer and evaluator are imported once the config has passed its
# checks, since they pull in TensorFlow (clu's summary writers), seconds a typo should not cost.
from esrgan_jax import cli, config_checks
from esrgan_jax.runtime import parallel, xla_flags

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
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines
  # TF 2.21 prints its oneDNN notice through absl logging, which TF_CPP_MIN_LOG_LEVEL no longer
  # filters; TensorFlow computes nothing here (it only writes TensorBoard events), so its oneDNN
  # kernels are not needed.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  for name in ("jax", "orbax", "tensorflow", "absl.flags"):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)
  warnings.filterwarnings("ignore", category=DeprecationWarning)


def _check_workdir(workdir: str) -> None:
  """Fails now, with one line, if the workdir cannot be written."""
  if workdir.startswith("gs://"):
    return
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".esrgan_jax_write_test_{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as error:
    fail(f"--workdir={workdir}: cannot write there ({error.strerror or error})")


def _unknown_config_field(argv: list[str], error: Exception) -> str:
  """Names the `--config.a.b=...` argument whose path the config does not have.

  ml_collections raises AttributeError(KeyError("'b'\nDid you mean ...")) while parsing it.
  """
  detail = error
  while isinstance(detail, BaseException) and detail.args:
    detail = detail.args[0]
  lines = str(detail).splitlines() or [""]
  key = lines[0].strip("'\"")
  hint = f" ({lines[1].strip()})" if len(lines) > 1 else ""
  for arg in argv[1:]:
    path = arg[len("--config."):].split("=", 1)[0].split(".")
    if arg.startswith("--config.") and key in path:
      parent = ".".join(["config", *path[:path.index(key)]])
      return f"{arg}: {parent} has no field {key!r}{hint}"
  return f"unknown config field {key!r}{hint}"


def _last_line_of_nested_error(message: str) -> str:
  """absl wraps errors raised while loading a config file with their whole traceback."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    lines = [line for line in lines if not line.startswith(("During handling", "The above"))]
    return lines[-1]
  return lines[0] if lines else message


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure reported as one line and exit status 1."""
  if any(arg in ("--help", "-h", "-?", "--helpshort", "--helpfull") for arg in argv[1:]):
    # absl's own --help exits 1; help that was asked for is a success.
    app.usage(shorthelp="--helpfull" not in argv, writeto_stdout=True, exitcode=cli.EXIT_OK)
  try:
    return FLAGS(argv)
  except flags.Error as error:
    fail(_last_line_of_nested_error(str(error)))
  except (AttributeError, KeyError) as error:
    fail(_unknown_config_field(argv, error))
  except OSError as error:  # a missing or unreadable config file
    fail(f"{error.filename or argv}: {error.strerror or error}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _quiet_logs(FLAGS.verbose)
  xla_flags.apply_defaults()
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id)
  parallel.log_topology()
  try:
    config = FLAGS.config
    mode = FLAGS.mode or config.mode
  except OSError as error:  # ml_collections reports a missing config file only when it is read
    lines = [line.strip() for line in str(error).splitlines()]
    detail = next((line.split("] ", 1)[-1] for line in lines if "[Errno" in line), lines[0])
    fail(f"--config={config_flags.get_config_filename(FLAGS['config'])}: {detail}")
  try:
    config_checks.validate(config, jax.device_count(), mode)
  except config_checks.ConfigError as error:
    fail(str(error))
  _check_workdir(FLAGS.workdir)

  try:
    from esrgan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
    from esrgan_jax.training import stop_request, train  # pylint: disable=g-import-not-at-top
    from esrgan_jax.training import failures
    from esrgan_jax.weights import generator as generator_weights  # pylint: disable=g-import-not-at-top
    from esrgan_jax.weights import checkpoints  # pylint: disable=g-import-not-at-top
    if FLAGS.verbose:
      checkpoints.show_orbax_logs(logging.get_absl_handler())
    # Errors whose message names the field or file at fault: one line, no traceback.
    user_errors = (cli.UserError, config_checks.ConfigError, generator_weights.CheckpointError,
                   failures.NonFiniteLossError)
    try:
      if mode == "eval":
        evaluate.run(config, FLAGS.workdir)
        return
      state = train.train_and_evaluate(config, FLAGS.workdir)
    except user_errors as error:
      fail(str(error))
    except stop_request.Interrupted as stopped:
      print(f"esrgan_jax: {stopped}", file=sys.stderr)
      sys.exit(cli.EXIT_INTERRUPTED)
  except KeyboardInterrupt:  # before the loop took over Ctrl-C: nothing to save yet
    print("esrgan_jax: stopped by Ctrl-C before training started", file=sys.stderr)
    sys.exit(cli.EXIT_INTERRUPTED)
  except OSError as error:
    fail(f"{error.filename + ': ' if error.filename else ''}{error.strerror or error}")
  if int(state.step) < config.train.num_steps:
    logging.warning("Training stopped at step %d of %d; the same command resumes it.",
                    int(state.step), config.train.num_steps)
    sys.exit(EXIT_STOPPED_BY_SIGNAL)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
