#!/usr/bin/env bash
# One SLURM task of launch/slurm_gpu.sh: srun starts this once per node with the trainer's command
# line. It adds the process's own --process_id and lets the process use every GPU of its node,
# then replaces itself with the trainer.
#
# Usage (by slurm_gpu.sh, under srun): bash launch/slurm_task.sh PYTHON -m esrgan_jax.main ARGS...

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh source-path=SCRIPTDIR
source "${LAUNCH_DIR}/common.sh"

[[ $# -gt 0 ]] || die "no trainer command given (this script is started by slurm_gpu.sh)"
require_vars "SLURM_PROCID|this task's rank: run this script through srun (slurm_gpu.sh does)"

# JAX's SLURM detection restricts each process to GPU number $SLURM_LOCALID, which suits one
# process per GPU. Here one process drives the whole node, so name all of its GPUs. They are
# numbered from 0 inside the CUDA_VISIBLE_DEVICES that SLURM set.
count_node_gpus() {
  if [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
    echo "${SLURM_GPUS_ON_NODE}"
  elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    local ids
    IFS=, read -r -a ids <<< "${CUDA_VISIBLE_DEVICES}"
    echo "${#ids[@]}"
  elif command -v nvidia-smi >/dev/null; then
    nvidia-smi --list-gpus | wc -l
  fi
}

if [[ -z "${JAX_LOCAL_DEVICE_IDS:-}" ]]; then
  num_gpus="$(count_node_gpus)"
  num_gpus="${num_gpus//[[:space:]]/}"
  [[ "${num_gpus}" =~ ^[1-9][0-9]*$ ]] \
    || die "cannot tell how many GPUs ${HOSTNAME:-this node} has: request them with #SBATCH --gpus-per-node, or set JAX_LOCAL_DEVICE_IDS"
  JAX_LOCAL_DEVICE_IDS="$(comma_range "${num_gpus}")"
  export JAX_LOCAL_DEVICE_IDS
fi

log "process ${SLURM_PROCID} on ${HOSTNAME:-this node}: local GPUs ${JAX_LOCAL_DEVICE_IDS}"
exec "$@" --process_id="${SLURM_PROCID}"
