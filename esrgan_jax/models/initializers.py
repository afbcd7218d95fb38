"""Weight initialisers matching the PyTorch reference, so fresh models start where BasicSR's do."""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

# PyTorch's default Conv2d/Linear init (kaiming_uniform with a=sqrt(5)) has variance 1 / (3 * fan_in).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def scaled_kaiming_normal(scale: float):
  """kaiming_normal_(fan_in, gain sqrt(2)) multiplied by `scale`, as BasicSR's default_init_weights."""
  return nn.initializers.variance_scaling(2.0 * scale**2, "fan_in", "normal")


def torch_default_bias(fan_in: int):
  """PyTorch's default Conv2d/Linear bias: uniform in +-1/sqrt(fan_in), fan_in = k * k * C_in."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_default_init(fan_in: int) -> dict:
  """kernel_init and bias_init of a freshly built torch.nn.Conv2d or Linear."""
  return dict(kernel_init=torch_default_kernel, bias_init=torch_default_bias(fan_in))
