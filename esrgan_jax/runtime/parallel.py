"""The device mesh, shardings and multi-process start-up: data parallel over every device."""

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
  """Starts jax.distributed when launched as several processes.

  Explicit values (flags, or ESRGAN_COORDINATOR_ADDRESS / ESRGAN_NUM_PROCESSES /
  ESRGAN_PROCESS_ID) win; otherwise JAX's own detection handles Cloud TPU pods and SLURM. A
  single plain process skips initialisation entirely.
  """
  coordinator_address = coordinator_address or os.environ.get("ESRGAN_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("ESRGAN_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("ESRGAN_PROCESS_ID", "-1"))
  if coordinator_address:
    if num_processes <= 0 or process_id < 0:
      raise ValueError("--coordinator_address needs --num_processes and --process_id "
                       "(or ESRGAN_NUM_PROCESSES and ESRGAN_PROCESS_ID)")
    # CPU devices need an explicit cross-process collective implementation; GPU/TPU ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  elif _launched_by_cluster():
    jax.distributed.initialize()


def _launched_by_cluster() -> bool:
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  tpu_pod = bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","))
  return slurm or tpu_pod


def log_topology() -> None:
  logging.info("JAX process %d of %d; %d local devices, %d global devices: %s",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices())


def create_mesh(devices=None) -> Mesh:
  """A 'data' mesh over `devices` (default: every device of the run; plan: a TPU topology's)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _fsdp_spec(shape: tuple[int, ...], num_shards: int) -> PartitionSpec:
  """Shards the largest axis divisible by the mesh size; small or indivisible leaves replicate."""
  if int(np.prod(shape, dtype=np.int64)) < 2**14:
    return PartitionSpec()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % num_shards == 0:
      spec = [None] * len(shape)
      spec[axis] = DATA_AXIS
      return PartitionSpec(*spec)
  return PartitionSpec()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool) -> Any:
  """Replicated leaves (pure data parallelism), or FSDP-style sharded params and moments."""
  if not fsdp:
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)
  num_shards = mesh.shape[DATA_AXIS]
  return jax.tree.map(lambda leaf: NamedSharding(mesh, _fsdp_spec(leaf.shape, num_shards)),
                      abstract_state)
