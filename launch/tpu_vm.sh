#!/usr/bin/env bash
# Train esrgan_jax on a Cloud TPU VM or pod slice: create the TPU, copy the code to every worker,
# install the requirements, start the trainer on all workers at once, and delete the TPU after.
#
# Usage: launch/tpu_vm.sh [options] COMMAND [-- TRAINER_FLAGS...]
#
# Commands:
#   create   create the TPU VM (or, with --queued, a queued resource, then wait until it is ACTIVE)
#   setup    copy this checkout (or clone REPO_URL) to all workers and install the requirements
#   train    plan the run for the slice (`python -m esrgan_jax.plan` on worker 0; it stops here
#            with the plan's line when the config does not fit), then start
#            `python -m esrgan_jax.main` on all workers, workdir on gs://
#   up       create, setup and train in one go
#   logs     follow the trainer's log on one worker (WORKER, default 0)
#   stop     stop the trainer on all workers
#   status   describe the TPU (or the queued resource)
#   delete   delete the TPU (or, with --queued, the queued resource and its TPU)
#
# Options:
#   --queued       use a queued resource (gcloud compute tpus queued-resources) instead of
#                  `tpu-vm create`: it waits for capacity instead of failing when there is none
#   --spot         ask for Spot capacity (cheaper, can be preempted)
#   --foreground   run the trainer attached to this terminal instead of under nohup
#   --no-plan      start training without planning it first
#   --dry-run      print the commands instead of running them; nothing is created or copied
#   -h, --help     show this help
# Anything after `--` is passed to the trainer, e.g. `-- --config.train.batch_size=64`.
#
# Required variables (all commands): PROJECT, ZONE, TPU_NAME.
#   create/up: ACCELERATOR_TYPE (e.g. v4-32, v5litepod-16, v6e-8) and TPU_VERSION (runtime, e.g.
#   tpu-ubuntu2204-base for v4, v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv6e for v6e).
#   train/up: CONFIG (e.g. configs/esrgan_psnr.py) and BUCKET (a GCS bucket; or set WORKDIR);
#   train also ACCELERATOR_TYPE, the slice the plan sizes the run for (not with --no-plan).
# Optional: WORKDIR (default gs://$BUCKET/esrgan_jax/$RUN_NAME), RUN_NAME (default: the config's
#   name), REPO_URL and REPO_REF (clone instead of copying this checkout), QUEUED_RESOURCE_ID
#   (default $TPU_NAME-qr), PYTHON_VERSION (default 3.12), QUEUED_TIMEOUT_S (default 86400).
# docs/launch.md describes each of them with an example.

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "${LAUNCH_DIR}")"
# shellcheck source=common.sh source-path=SCRIPTDIR
source "${LAUNCH_DIR}/common.sh"

# Paths on the workers. $HOME is left for the worker's shell to expand.
# shellcheck disable=SC2016
REMOTE_VENV='$HOME/esrgan_venv' REMOTE_LOG='$HOME/esrgan_train.log' REMOTE_PID='$HOME/esrgan_train.pid'
REMOTE_CODE_DIR="esrgan_jax"  # relative to $HOME
REMOTE_TARBALL="esrgan_jax_code.tar.gz"  # likewise

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------------------------
# Arguments.

DRY_RUN=0
USE_QUEUED=0
USE_SPOT=0
FOREGROUND=0
PLAN=1
COMMAND=""
TRAINER_FLAGS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --queued) USE_QUEUED=1 ;;
    --spot) USE_SPOT=1 ;;
    --foreground) FOREGROUND=1 ;;
    --no-plan) PLAN=0 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; TRAINER_FLAGS=("$@"); break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
      [[ -z "${COMMAND}" ]] || die "one command at a time, got '${COMMAND}' and '$1' (see --help)"
      COMMAND="$1"
      ;;
  esac
  shift
done
export DRY_RUN

case "${COMMAND}" in
  create|setup|train|up|logs|stop|status|delete) ;;
  "") die "no command given: use one of create, setup, train, up, logs, stop, status, delete" ;;
  *) die "unknown command '${COMMAND}': use one of create, setup, train, up, logs, stop, status, delete" ;;
esac

# ---------------------------------------------------------------------------------------------
# Settings, all checked before the first gcloud call.

needed=(
  "PROJECT|your Google Cloud project id (export PROJECT=my-project)"
  "ZONE|a zone that has your TPU type, e.g. us-central2-b for v4 (export ZONE=us-central2-b)"
  "TPU_NAME|a name for the TPU VM, e.g. esrgan-v4-32 (export TPU_NAME=esrgan-v4-32)"
)
if [[ "${COMMAND}" == create || "${COMMAND}" == up || ( "${COMMAND}" == train && PLAN -eq 1 ) ]]; then
  needed+=("ACCELERATOR_TYPE|the TPU type and size, e.g. v4-32, v5litepod-16 or v6e-8")
fi
if [[ "${COMMAND}" == create || "${COMMAND}" == up ]]; then
  needed+=(
    "TPU_VERSION|the TPU software (runtime) version: tpu-ubuntu2204-base for v4, v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e"
  )
fi
if [[ "${COMMAND}" == train || "${COMMAND}" == up ]]; then
  needed+=("CONFIG|a config file, e.g. configs/esrgan_psnr.py (stage 1) or configs/esrgan.py (stage 2)")
  if [[ -z "${WORKDIR:-}" ]]; then
    needed+=("BUCKET|a GCS bucket the TPU's service account can write, e.g. my-bucket (or set WORKDIR=gs://...)")
  fi
fi
require_vars "${needed[@]}"

if [[ "${COMMAND}" == train || "${COMMAND}" == up ]]; then
  if [[ -z "${WORKDIR:-}" ]]; then
    RUN_NAME="${RUN_NAME:-$(basename "${CONFIG%%:*}" .py)${CONFIG#"${CONFIG%%:*}"}}"
    RUN_NAME="${RUN_NAME//:/-}"
    WORKDIR="gs://${BUCKET#gs://}/esrgan_jax/${RUN_NAME}"
  fi
  # Every worker writes checkpoints and reads them back on restart, so the workdir must be one
  # place they all see; a TPU VM's local disk is per worker.
  [[ "${WORKDIR}" == gs://* ]] || die "WORKDIR must be a gs:// path that all TPU workers share, got '${WORKDIR}'"
  [[ -f "${REPO_ROOT}/${CONFIG%%:*}" || -n "${REPO_URL:-}" ]] \
    || die "CONFIG '${CONFIG}' not found under ${REPO_ROOT} (give it relative to the repository root)"
fi

QUEUED_RESOURCE_ID="${QUEUED_RESOURCE_ID:-${TPU_NAME}-qr}"
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
QUEUED_TIMEOUT_S="${QUEUED_TIMEOUT_S:-86400}"

if [[ "${DRY_RUN}" != 1 ]] && ! command -v gcloud >/dev/null; then
  die "gcloud not found on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
fi

LOCATION_FLAGS=(--zone="${ZONE}" --project="${PROJECT}")

# ---------------------------------------------------------------------------------------------
# Steps.

create_tpu() {
  local spot_flags=()
  if (( USE_SPOT )); then
    spot_flags=(--spot)
  fi
  if (( USE_QUEUED )); then
    run_cmd gcloud compute tpus queued-resources create "${QUEUED_RESOURCE_ID}" \
      --node-id="${TPU_NAME}" \
      --accelerator-type="${ACCELERATOR_TYPE}" \
      --runtime-version="${TPU_VERSION}" \
      "${LOCATION_FLAGS[@]}" ${spot_flags[@]+"${spot_flags[@]}"}
    wait_for_queued_resource
  else
    run_cmd gcloud compute tpus tpu-vm create "${TPU_NAME}" \
      --accelerator-type="${ACCELERATOR_TYPE}" \
      --version="${TPU_VERSION}" \
      "${LOCATION_FLAGS[@]}" ${spot_flags[@]+"${spot_flags[@]}"}
  fi
}

wait_for_queued_resource() {
  local describe=(gcloud compute tpus queued-resources describe "${QUEUED_RESOURCE_ID}"
    "${LOCATION_FLAGS[@]}" --format='value(state.state)')
  if [[ "${DRY_RUN}" == 1 ]]; then
    quote_cmd "${describe[@]}"
    echo "# (repeated every 30 s until the state is ACTIVE)"
    return
  fi
  local state="" waited=0
  while true; do
    state="$("${describe[@]}")"
    case "${state}" in
      ACTIVE) log "queued resource ${QUEUED_RESOURCE_ID} is ACTIVE"; return ;;
      FAILED|SUSPENDED) die "queued resource ${QUEUED_RESOURCE_ID} is ${state}: see \`gcloud compute tpus queued-resources describe ${QUEUED_RESOURCE_ID} --zone=${ZONE}\`" ;;
    esac
    (( waited < QUEUED_TIMEOUT_S )) \
      || die "queued resource ${QUEUED_RESOURCE_ID} still ${state} after ${QUEUED_TIMEOUT_S} s; it stays queued (delete it with: $0 --queued delete)"
    log "queued resource ${QUEUED_RESOURCE_ID} is ${state:-not visible yet}; waiting"
    sleep 30
    waited=$(( waited + 30 ))
  done
}

ssh_all_workers() {
  run_cmd gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${LOCATION_FLAGS[@]}" --worker=all --command="$1"
}

# Packs what `git status` would show as the code: tracked files and untracked ones that are not
# ignored, so local edits travel but venvs, workdirs and caches do not.
pack_checkout() {
  local tarball="$1"
  if [[ "${DRY_RUN}" == 1 ]]; then
    echo "# pack ${REPO_ROOT} (tracked and unignored files) into ${tarball}"
    return
  fi
  if git -C "${REPO_ROOT}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
      cd "${REPO_ROOT}"
      git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' path; do [[ -e "${path}" ]] && printf '%s\0' "${path}"; done \
        | COPYFILE_DISABLE=1 tar -czf "${tarball}" --null -T -
    )
  else
    COPYFILE_DISABLE=1 tar -czf "${tarball}" --exclude=.git -C "${REPO_ROOT}" .
  fi
}

setup_workers() {
  local fetch_code
  if [[ -n "${REPO_URL:-}" ]]; then
    fetch_code="rm -rf ${REMOTE_CODE_DIR} && git clone --quiet $(quote_cmd "${REPO_URL}") ${REMOTE_CODE_DIR}"
    if [[ -n "${REPO_REF:-}" ]]; then
      fetch_code+=" && git -C ${REMOTE_CODE_DIR} checkout --quiet $(quote_cmd "${REPO_REF}")"
    fi
  else
    local tmp_dir tarball
    tmp_dir="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: tmp_dir is local and gone when the trap fires
    trap "rm -rf '${tmp_dir}'" EXIT
    tarball="${tmp_dir}/${REMOTE_TARBALL}"
    pack_checkout "${tarball}"
    run_cmd gcloud compute tpus tpu-vm scp "${tarball}" "${TPU_NAME}:${REMOTE_TARBALL}" \
      "${LOCATION_FLAGS[@]}" --worker=all
    fetch_code="rm -rf ${REMOTE_CODE_DIR} && mkdir -p ${REMOTE_CODE_DIR} && tar -xzf ${REMOTE_TARBALL} -C ${REMOTE_CODE_DIR}"
  fi
  ssh_all_workers "set -e; cd \$HOME && ${fetch_code} && PYTHON_VERSION=$(quote_cmd "${PYTHON_VERSION}") VENV_DIR=${REMOTE_VENV} bash ${REMOTE_CODE_DIR}/launch/tpu_worker_setup.sh"
}

# Plans the run on worker 0 (its virtualenv has libtpu, from jax[tpu]) for the slice's topology:
# `python -m esrgan_jax.plan` compiles the config's train step for it without running anything,
# and exits 3 when a chip's HBM cannot hold it. The plan sees the trainer's --config.* flags.
plan_training() {
  if (( ! PLAN )); then
    return
  fi
  local config_flags=() arg planner status=0 output
  for arg in ${TRAINER_FLAGS[@]+"${TRAINER_FLAGS[@]}"}; do
    if [[ "${arg}" == --config.* ]]; then
      config_flags+=("${arg}")
    fi
  done
  planner="$(quote_cmd -m esrgan_jax.plan --config="${CONFIG}" --topology="${ACCELERATOR_TYPE}" ${config_flags[@]+"${config_flags[@]}"})"
  local plan_cmd=(gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${LOCATION_FLAGS[@]}" --worker=0
    --command="cd \$HOME/${REMOTE_CODE_DIR} && ${REMOTE_VENV}/bin/python ${planner}")
  if [[ "${DRY_RUN}" == 1 ]]; then
    quote_cmd "${plan_cmd[@]}"
    return
  fi
  log "planning ${CONFIG} for ${ACCELERATOR_TYPE} on worker 0 (skip with --no-plan)"
  echo "+ $(quote_cmd "${plan_cmd[@]}")" >&2
  # Shown as it comes (a large config compiles for minutes) and kept for its last line.
  output="$("${plan_cmd[@]}" 2>&1 | tee /dev/stderr)" || status=$?
  case "${status}" in
    0) ;;
    3) die "not starting: ${CONFIG} does not fit ${ACCELERATOR_TYPE}: ${output##*$'\n'}" ;;
    *) die "not starting: the plan failed (exit ${status}): ${output##*$'\n'} (--no-plan skips it)" ;;
  esac
}

start_training() {
  # One process per worker; main.py calls jax.distributed.initialize(), which finds the other
  # workers of the slice by itself on Cloud TPU. All workers must start together, which
  # `--worker=all` does: it runs the command on every worker at once.
  local trainer
  trainer="$(quote_cmd -m esrgan_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" ${TRAINER_FLAGS[@]+"${TRAINER_FLAGS[@]}"})"
  log "workdir: ${WORKDIR}"
  if (( FOREGROUND )); then
    ssh_all_workers "set -o pipefail; cd \$HOME/${REMOTE_CODE_DIR} && ${REMOTE_VENV}/bin/python ${trainer} 2>&1 | tee ${REMOTE_LOG}"
  else
    # nohup and the redirections let ssh return while the trainer keeps running. The `cd` is a
    # statement of its own: in `cd && nohup ... &` the `&` would background a subshell holding
    # ssh's stdout open, and $! would be that subshell. The pid file is what `stop` kills, so it
    # never has to match processes by name.
    ssh_all_workers "cd \$HOME/${REMOTE_CODE_DIR} || exit 1; nohup ${REMOTE_VENV}/bin/python ${trainer} >${REMOTE_LOG} 2>&1 </dev/null & echo \$! >${REMOTE_PID}"
    if [[ "${DRY_RUN}" != 1 ]]; then
      log "started on all workers; follow it with: $0 logs"
    fi
  fi
}

show_logs() {
  run_cmd gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${LOCATION_FLAGS[@]}" --worker="${WORKER:-0}" \
    --command="tail -n 200 -F ${REMOTE_LOG}"
}

stop_training() {
  ssh_all_workers "if [ -f ${REMOTE_PID} ]; then kill \$(cat ${REMOTE_PID}) 2>/dev/null || true; rm -f ${REMOTE_PID}; fi"
}

show_status() {
  if (( USE_QUEUED )); then
    run_cmd gcloud compute tpus queued-resources describe "${QUEUED_RESOURCE_ID}" "${LOCATION_FLAGS[@]}"
  else
    run_cmd gcloud compute tpus tpu-vm describe "${TPU_NAME}" "${LOCATION_FLAGS[@]}"
  fi
}

delete_tpu() {
  if (( USE_QUEUED )); then
    # --force deletes the TPU the queued resource holds along with it.
    run_cmd gcloud compute tpus queued-resources delete "${QUEUED_RESOURCE_ID}" "${LOCATION_FLAGS[@]}" --force --quiet
  else
    run_cmd gcloud compute tpus tpu-vm delete "${TPU_NAME}" "${LOCATION_FLAGS[@]}" --quiet
  fi
}

case "${COMMAND}" in
  create) create_tpu ;;
  setup) setup_workers ;;
  train) plan_training; start_training ;;
  up) create_tpu; setup_workers; plan_training; start_training ;;
  logs) show_logs ;;
  stop) stop_training ;;
  status) show_status ;;
  delete) delete_tpu ;;
esac
