"""Entry point: `python -m esrgan_jax.main --config=configs/esrgan.py --workdir=DIR`.

Parses flags, starts multi-process JAX when launched that way, logs the topology, and dispatches
to training or to eval mode. Everything else lives in train.py and evaluate.py.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from esrgan_jax import config_checks, evaluate, generator_io, parallel, train

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id)
  parallel.log_topology()
  config = FLAGS.config
  mode = FLAGS.mode or config.mode
  try:
    if mode == "eval":
      evaluate.run(config, FLAGS.workdir)
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except (config_checks.ConfigError, generator_io.CheckpointError,
          train.NonFiniteLossError) as error:
    logging.error("%s", error)
    print(f"esrgan_jax: error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
