"""Entry point: `python -m esrgan_jax.main --config=configs/esrgan.py --workdir=DIR`.

Parses flags, starts multi-process JAX when launched that way, logs the topology, and dispatches
to training or to eval mode. Everything else lives in train.py and evaluate.py.

Exit status: 0 when training reached config.train.num_steps (or eval finished); 1 with one line
`esrgan_jax: error: ...` on stderr for a bad flag, config field, file or a non-finite loss;
143 (as for a process killed by SIGTERM) when a SIGTERM stopped training after a checkpoint, so
that scripts and schedulers do not take a preempted run for a finished one.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

# Only light modules here: the trainer and evaluator are imported once the config has passed its
# checks, since they pull in TensorFlow (clu's summary writers), seconds a typo should not cost.
from esrgan_jax import config_checks, parallel, xla_flags

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
flags.mark_flags_as_required(["config", "workdir"])

EXIT_STOPPED_BY_SIGNAL = 128 + 15


def fail(message: str) -> None:
  print(f"esrgan_jax: error: {message}", file=sys.stderr)
  sys.exit(1)


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
    return lines[-1]
  return lines[0] if lines else message


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure reported as one line and exit status 1."""
  try:
    return FLAGS(argv)
  except flags.Error as error:
    fail(_last_line_of_nested_error(str(error)))
  except (AttributeError, KeyError) as error:
    fail(_unknown_config_field(argv, error))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  xla_flags.apply_defaults()
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id)
  parallel.log_topology()
  config = FLAGS.config
  mode = FLAGS.mode or config.mode
  try:
    if mode == "train":
      config_checks.validate(config, jax.device_count())
  except config_checks.ConfigError as error:
    fail(str(error))

  from esrgan_jax import evaluate, train  # pylint: disable=g-import-not-at-top
  from esrgan_jax.weights import generator as generator_weights
  # Errors whose message names the field or file at fault: one line, no traceback.
  user_errors = (config_checks.ConfigError, generator_weights.CheckpointError,
                 train.NonFiniteLossError)
  try:
    if mode == "eval":
      evaluate.run(config, FLAGS.workdir)
      return
    state = train.train_and_evaluate(config, FLAGS.workdir)
  except user_errors as error:
    fail(str(error))
  if int(state.step) < config.train.num_steps:
    logging.warning("Training stopped at step %d of %d; the same command resumes it.",
                    int(state.step), config.train.num_steps)
    sys.exit(EXIT_STOPPED_BY_SIGNAL)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
