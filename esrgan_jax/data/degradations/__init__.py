"""Real-ESRGAN's second-order degradations as pure, jittable jax.numpy functions on NHWC [0, 1]."""
