"""The test suite; its folders mirror the package's (tests/training/ tests esrgan_jax/training/)."""

import os

# The repository root: the working directory of the commands the tests run, as a user runs them.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
