"""esrgan_jax: ESRGAN (Wang et al., ECCV-W 2018) training, evaluation and inference in JAX/Flax."""
