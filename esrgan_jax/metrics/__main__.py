"""`python -m esrgan_jax.metrics`: see esrgan_jax/metrics/cli.py."""

import sys

from esrgan_jax.metrics import cli

if __name__ == "__main__":  # importing the package's modules (tests, tools) must not run it
  sys.exit(cli.main())
