"""Random FID-Inception variables in esrgan_jax's layout, for tests and benchmarks that need the
network's shapes and cost but no real weights (which cannot be downloaded here)."""

import numpy as np

from esrgan_jax.weights import inception as inception_weights


def random_inception_variables(seed: int = 0) -> dict:
  """He-normal convolution kernels and identity BatchNorm, as nested dicts of float32 arrays."""
  rng = np.random.default_rng(seed)
  variables = {}
  for key, shape in inception_weights.inception_variable_shapes().items():
    if key[-1] == "kernel":
      value = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
    else:
      value = np.ones(shape) if key[-1] in ("scale", "var") else np.zeros(shape)
    node = variables
    for name in key[:-1]:
      node = node.setdefault(name, {})
    node[key[-1]] = value.astype(np.float32)
  return variables
