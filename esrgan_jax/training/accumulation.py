"""Gradient accumulation: one update from the mean gradient of several micro-batches.

`accumulate(gradients, batch, steps)` splits the global batch into `steps` micro-batches and
runs `gradients(micro_batch) -> (tree, metrics)` on each in turn (a lax.scan, so only one
micro-batch's activations are alive at a time), all from the step's starting state, and returns
the mean of the trees and of the metrics. With equal micro-batches the mean of their mean losses
is the whole batch's mean loss, so the update is the one big batch's, up to float32 rounding, for
every loss that is a mean over samples: L1 / pixel, perceptual, the plain GAN loss.

What a micro-batch sees in the GAN stage. RaGAN compares each logit with the mean logit of the
other kind, E[C(xf)] and E[C(xr)]: with accumulation those means are over the micro-batch
(batch_size / grad_accum_steps samples), as in PyTorch trainers that accumulate (traiNNer-redux's
accum_iter), so the RaGAN term is the mean of the micro-batches' RaGAN losses, not the big batch's.
Likewise the vgg_style discriminator's BatchNorm normalises by micro-batch statistics. Its running
statistics (the 'batch_stats' tree, which training never reads) become the mean over micro-batches
of each one's update, which for the running mean is the big batch's. Spectral norm's power
iteration (the unet_sn discriminator) does not depend on the data, so every micro-batch gives the
big batch's vectors: a Real-ESRGAN step (plain GAN loss, U-Net with spectral norm) accumulated is
the big batch's step.

Micro-batch k holds rows k, k + steps, k + 2 * steps, ... of the global batch: the batch is split
over the devices in contiguous blocks, so each device keeps computing on its own rows and no
micro-batch has to move between devices.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp


def split(batch: Any, steps: int) -> Any:
  """Each (B, ...) leaf as (steps, B / steps, ...), micro-batch k being rows k::steps."""
  def one(x):
    return jnp.swapaxes(x.reshape(x.shape[0] // steps, steps, *x.shape[1:]), 0, 1)
  return jax.tree.map(one, batch)


def accumulate(gradients: Callable[[Any], Any], batch: Any, steps: int) -> Any:
  """The mean over `steps` micro-batches of `gradients(micro_batch)` (any tree of float
  arrays); steps=1 calls it once on the whole batch, the program of a step without
  accumulation."""
  if steps == 1:
    return gradients(batch)
  micro_batches = split(batch, steps)
  first = jax.tree.map(lambda x: x[0], micro_batches)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(gradients, first))

  def add(total, micro_batch):
    return jax.tree.map(jnp.add, total, gradients(micro_batch)), None

  total, _ = jax.lax.scan(add, zeros, micro_batches)
  return jax.tree.map(lambda x: x / steps, total)
