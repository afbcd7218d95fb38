#!/usr/bin/env bash
# Train on one machine with one or more NVIDIA GPUs: a single process drives every visible GPU,
# and the trainer shards each batch over them (data parallel over the device mesh). No
# jax.distributed set-up is involved.
#
# Usage: CONFIG=configs/esrgan_psnr.py WORKDIR=runs/psnr launch/gpu_single_host.sh [--dry-run] \
#          [-- TRAINER_FLAGS...]
#   e.g. ... launch/gpu_single_host.sh -- --config.train.batch_size=32
#
# Required: CONFIG (config file relative to the repo root), WORKDIR (local path or gs://).
# Optional: CUDA_VISIBLE_DEVICES (which GPUs, default all), VENV (a virtualenv with
#   `pip install -r requirements.txt "jax[cuda12]==<pinned jax>"`), PYTHON (default $VENV/bin/python,
#   else python3), ESRGAN_XLA_GPU_FLAGS / XLA_FLAGS.

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "${LAUNCH_DIR}")"
# shellcheck source=common.sh source-path=SCRIPTDIR
source "${LAUNCH_DIR}/common.sh"

DRY_RUN=0
TRAINER_FLAGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    --) shift; TRAINER_FLAGS=("$@"); break ;;
    *) die "unknown argument '$1': trainer flags go after '--' (see --help)" ;;
  esac
  shift
done
export DRY_RUN

require_vars \
  "CONFIG|a config file relative to the repository root, e.g. configs/esrgan_psnr.py" \
  "WORKDIR|the run's directory, local or gs://, e.g. runs/esrgan_psnr"
[[ -f "${REPO_ROOT}/${CONFIG%%:*}" ]] || die "CONFIG '${CONFIG}' not found under ${REPO_ROOT}"

if [[ -n "${VENV:-}" ]]; then
  PYTHON="${PYTHON:-${VENV}/bin/python}"
fi
PYTHON="${PYTHON:-python3}"

# One process: drop multi-process settings left in the shell, which would make the trainer wait
# for processes that never start.
unset ESRGAN_COORDINATOR_ADDRESS ESRGAN_NUM_PROCESSES ESRGAN_PROCESS_ID
export_gpu_xla_flags
log "GPUs: ${CUDA_VISIBLE_DEVICES:-all}; XLA_FLAGS=${XLA_FLAGS}"

cd "${REPO_ROOT}"
exec_cmd "${PYTHON}" -m esrgan_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" \
  ${TRAINER_FLAGS[@]+"${TRAINER_FLAGS[@]}"}
