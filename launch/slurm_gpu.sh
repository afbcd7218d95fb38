#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one trainer process per node, each driving all of its
# node's GPUs; JAX joins the processes into one data-parallel mesh over every GPU of the job.
#
# Submit from the repository root (on a filesystem all nodes see):
#   CONFIG=configs/esrgan_psnr.py WORKDIR=/shared/runs/psnr sbatch launch/slurm_gpu.sh
#   CONFIG=configs/esrgan.py WORKDIR=gs://my-bucket/esrgan sbatch --nodes=4 launch/slurm_gpu.sh \
#     --config.train.batch_size=64
# Arguments after the script name are passed to the trainer. sbatch options on the command line
# override the #SBATCH lines below; a cluster's partition and account usually go there too.
#
# Required: CONFIG (config file, relative to the repo root), WORKDIR (a path every node sees:
#   a shared filesystem or gs://).
# Optional: VENV (a virtualenv with `pip install -r requirements.txt "jax[cuda12]==<pinned jax>"`),
#   PYTHON (default $VENV/bin/python, else python3), REPO_DIR (default: the submit directory),
#   COORDINATOR_PORT (default: derived from the job id), ESRGAN_XLA_GPU_FLAGS / XLA_FLAGS.
# DRY_RUN=1 prints the srun command instead of running it.
#
# How the processes find each other: this script names the coordinator (port COORDINATOR_PORT on
# the job's first node) and the process count (one per node) and passes them to every process as
# --coordinator_address / --num_processes, and launch/slurm_task.sh adds each one's
# --process_id=$SLURM_PROCID. JAX could detect all three from SLURM_* itself, but doing it here
# shows the values in the job log, lets a busy port be changed, and lets slurm_task.sh give each
# process all of its node's GPUs (JAX's SLURM detection would give it only GPU $SLURM_LOCALID).
#
#SBATCH --job-name=esrgan-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --exclusive
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
##SBATCH --partition=gpu
##SBATCH --account=my-account

set -euo pipefail

# sbatch runs a copy of this file from its spool directory, so the checkout is found through the
# submit directory, not through this file's path.
REPO_DIR="${REPO_DIR:-${SLURM_SUBMIT_DIR:-$(pwd)}}"
if [[ ! -f "${REPO_DIR}/launch/common.sh" ]]; then
  echo "slurm_gpu.sh: error: no esrgan_jax checkout at '${REPO_DIR}': submit from the repository root or set REPO_DIR to it" >&2
  exit 2
fi
# shellcheck source=common.sh
source "${REPO_DIR}/launch/common.sh"

require_vars \
  "CONFIG|a config file relative to the repository root, e.g. configs/esrgan_psnr.py" \
  "WORKDIR|a directory every node can write, on a shared filesystem or gs://, e.g. gs://my-bucket/esrgan_psnr" \
  "SLURM_JOB_ID|the SLURM job id: run this script with sbatch (or inside salloc)" \
  "SLURM_JOB_NODELIST|the job's node list: run this script with sbatch (or inside salloc)" \
  "SLURM_NNODES|the job's node count: run this script with sbatch (or inside salloc)"

[[ -f "${REPO_DIR}/${CONFIG%%:*}" ]] || die "CONFIG '${CONFIG}' not found under ${REPO_DIR}"

coordinator_host="$(first_slurm_host "${SLURM_JOB_NODELIST}")"
coordinator_port="${COORDINATOR_PORT:-$(default_coordinator_port "${SLURM_JOB_ID}")}"
num_processes="${SLURM_NNODES}"

if [[ -n "${VENV:-}" ]]; then
  PYTHON="${PYTHON:-${VENV}/bin/python}"
fi
PYTHON="${PYTHON:-python3}"

# srun passes the whole environment on to the tasks, XLA_FLAGS included.
export_gpu_xla_flags

log "job ${SLURM_JOB_ID}: ${num_processes} processes, coordinator ${coordinator_host}:${coordinator_port}"
log "XLA_FLAGS=${XLA_FLAGS}"

srun_flags=(--nodes="${num_processes}" --ntasks="${num_processes}" --ntasks-per-node=1
  --kill-on-bad-exit=1)
# srun no longer inherits --cpus-per-task from sbatch (SLURM >= 22.05): pass it on, or the
# input pipeline gets one core per node.
if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
  srun_flags+=(--cpus-per-task="${SLURM_CPUS_PER_TASK}")
fi

cd "${REPO_DIR}"
# --kill-on-bad-exit: if one process dies the others would wait forever in their next collective.
exec_cmd srun "${srun_flags[@]}" bash "${REPO_DIR}/launch/slurm_task.sh" \
  "${PYTHON}" -m esrgan_jax.main \
  --config="${CONFIG}" --workdir="${WORKDIR}" \
  --coordinator_address="${coordinator_host}:${coordinator_port}" \
  --num_processes="${num_processes}" \
  "$@"
