"""Weight initialisers matching the PyTorch reference, so fresh models start where BasicSR's do."""

from flax import linen as nn

# PyTorch's default Conv2d/Linear init (kaiming_uniform with a=sqrt(5)) has variance 1 / (3 * fan_in).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def scaled_kaiming_normal(scale: float):
  """kaiming_normal_(fan_in, gain sqrt(2)) multiplied by `scale`, as BasicSR's default_init_weights."""
  return nn.initializers.variance_scaling(2.0 * scale**2, "fan_in", "normal")
