"""Input side of esrgan_jax: image files, the bicubic degradation, datasets and the input pipeline."""
