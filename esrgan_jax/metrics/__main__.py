import sys

from esrgan_jax.metrics import cli

sys.exit(cli.main())
