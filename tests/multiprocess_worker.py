"""One process of a multi-process CPU training run, started by tests/runtime/test_multiprocess.py.

argv: COORDINATOR NUM_PROCESSES PROCESS_ID WORKDIR NUM_STEPS [GENERATOR_INIT]. Trains the tiny
PSNR config, or with GENERATOR_INIT (a stage-1 workdir) the tiny GAN config initialised from it,
then writes this process's copy of the generator params and what it saw of the topology.
"""

import json
import os
import sys

import jax
import numpy as np
from absl import logging

from esrgan_jax.runtime import parallel


def tiny_config(num_steps: int):
  from configs import esrgan_psnr
  config = esrgan_psnr.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.update(dataset="bundled", patch_size=32, eval_max_images=1)
  config.train.update(batch_size=8, num_steps=num_steps, log_every_steps=2, eval_every_steps=1000,
                      checkpoint_every_steps=num_steps, ema_decay=0.5)
  config.optimizer_g.learning_rate = 1e-3
  return config


def tiny_gan_config(num_steps: int, generator_init: str):
  from configs import esrgan
  config = esrgan.get_config()
  psnr = tiny_config(num_steps)
  for section in ("model", "data", "train", "optimizer_g"):
    config[section] = psnr[section]
  config.generator_init = generator_init
  # The U-Net discriminator takes 32x32 patches (the VGG-style one needs 128x128).
  config.discriminator.update(name="unet_sn", num_feat=4)
  return config


def main(coordinator, num_processes, process_id, workdir, num_steps, generator_init=""):
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  if int(num_processes) > 1:
    parallel.initialize_distributed(coordinator, int(num_processes), int(process_id))
  from esrgan_jax.training import train
  config = (tiny_gan_config(int(num_steps), generator_init) if generator_init
            else tiny_config(int(num_steps)))
  state = train.train_and_evaluate(config, workdir)
  local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state.generator)
  flat = {"/".join(str(k.key) for k in path): value
          for path, value in jax.tree_util.tree_leaves_with_path(local)}
  np.savez(os.path.join(workdir, f"params_process{jax.process_index()}.npz"), **flat)
  with open(os.path.join(workdir, f"topology_process{jax.process_index()}.json"), "w") as f:
    json.dump({"process_count": jax.process_count(), "device_count": jax.device_count(),
               "local_device_count": jax.local_device_count(),
               "step": int(jax.device_get(state.step))}, f)
  if int(num_processes) > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
