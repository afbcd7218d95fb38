"""Shared test setup: tests run on CPU with quiet TensorFlow.

The 'rbg' PRNG compiles parameter initialisation several times faster than threefry on CPU
(16 s -> 4 s for a tiny RRDBNet here); tests compare runs with each other, never with fixed
random streams, so they do not depend on the generator. Subprocesses inherit these variables.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
