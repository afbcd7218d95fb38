"""Plain linen modules: the generator, the discriminators, VGG19, LPIPS and the FID Inception."""

import jax.numpy as jnp

from esrgan_jax.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from esrgan_jax.models.inception import InceptionV3FID
from esrgan_jax.models.lpips import LPIPS
from esrgan_jax.models.rrdbnet import RRDBNet
from esrgan_jax.models.vgg19 import VGG19Features

# The one place a discriminator name from a config is resolved.
DISCRIMINATORS = {
    "vgg_style": VGGStyleDiscriminator,
    "unet_sn": UNetDiscriminatorSN,
}

# The one place `config.compute_dtype` is resolved: every module takes its dtype as a field.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
