# shellcheck shell=bash
# Helpers shared by the launch/ scripts. Source it; it defines functions and runs nothing.
#
# Every script reads its settings from environment variables, checks them up front with
# `require_vars` (so a missing one fails before anything is created or paid for), and runs its
# external commands through `run_cmd`, which only prints them when DRY_RUN=1.

# The name used in error messages: the script that sourced us, not this file.
LAUNCH_SCRIPT_NAME="$(basename "${0:-launch}")"

# XLA flags that help ESRGAN's data-parallel training on NVIDIA GPUs: the latency-hiding scheduler
# overlaps the gradient all-reduce with the backward convolutions, and the high-priority stream keeps
# those collectives from queueing behind compute. (The flags that help on one device too, such as
# CUDA graphs for the convolutions, are added by the trainer itself: esrgan_jax/runtime/xla_flags.py.)
# tests/project/test_launch_scripts.py checks that the pinned jaxlib knows them, since XLA aborts on a flag
# it does not know.
DEFAULT_XLA_GPU_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true --xla_gpu_enable_highest_priority_async_stream=true"

# Exports XLA_FLAGS with ours first and the user's after, so a user's setting of the same flag
# wins. ESRGAN_XLA_GPU_FLAGS replaces ours (set it empty to add none).
export_gpu_xla_flags() {
  local ours="${ESRGAN_XLA_GPU_FLAGS-${DEFAULT_XLA_GPU_FLAGS}}"
  XLA_FLAGS="${ours}${XLA_FLAGS:+ ${XLA_FLAGS}}"
  XLA_FLAGS="${XLA_FLAGS# }"
  export XLA_FLAGS
}

die() {
  echo "${LAUNCH_SCRIPT_NAME}: error: $*" >&2
  exit 1
}

log() {
  echo "${LAUNCH_SCRIPT_NAME}: $*" >&2
}

# require_vars "NAME|what to set it to" ...
# Reports every unset or empty variable at once, each with what to set it to, then exits 2.
require_vars() {
  local spec name help missing=0
  for spec in "$@"; do
    name="${spec%%|*}"
    help="${spec#*|}"
    if [[ -z "${!name:-}" ]]; then
      echo "${LAUNCH_SCRIPT_NAME}: error: ${name} is not set: set ${name} to ${help}" >&2
      missing=1
    fi
  done
  if (( missing )); then
    exit 2
  fi
}

# Prints its arguments as one line of shell that re-creates them: plain words as they are,
# anything else in single quotes. Dry-run output can be pasted back into a shell as it is.
quote_cmd() {
  local arg out=()
  for arg in "$@"; do
    if [[ "${arg}" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("${arg}")
    elif [[ "${arg}" =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
      # --flag='value with spaces' reads better than '--flag=value with spaces'.
      out+=("${BASH_REMATCH[1]}'${BASH_REMATCH[2]//\'/\'\\\'\'}'")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# Runs a command, or with DRY_RUN=1 prints it on stdout instead. Real runs echo the command on
# stderr first so a log shows what was done.
run_cmd() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    quote_cmd "$@"
  else
    echo "+ $(quote_cmd "$@")" >&2
    "$@"
  fi
}

# Like run_cmd, but replaces the shell with the command, so signals sent to the script (a
# scheduler's SIGTERM before preemption, Ctrl-C) reach the trainer itself.
exec_cmd() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    quote_cmd "$@"
    exit 0
  fi
  echo "+ $(quote_cmd "$@")" >&2
  exec "$@"
}

# pinned_version PACKAGE REQUIREMENTS_FILE: the X of a `PACKAGE==X` line, so accelerator wheels
# (jax[tpu], jax[cuda12]) are installed at exactly the version the project is tested with.
pinned_version() {
  local package="$1" requirements="$2" version
  [[ -f "${requirements}" ]] || die "${requirements} not found"
  version="$(sed -n "s/^${package}==\([^ ;#]*\).*/\1/p" "${requirements}" | head -n 1)"
  [[ -n "${version}" ]] || die "no '${package}==' pin in ${requirements}"
  echo "${version}"
}

# first_slurm_host NODELIST: the first host name of a SLURM node list such as 'gpu[003-005,9]'.
# scontrol does the expansion, because SLURM's list syntax has more forms than is worth parsing.
first_slurm_host() {
  local hosts=()
  mapfile -t hosts < <(scontrol show hostnames "$1")
  [[ ${#hosts[@]} -gt 0 && -n "${hosts[0]}" ]] || die "scontrol could not expand node list '$1'"
  echo "${hosts[0]}"
}

# default_coordinator_port JOB_ID: the port JAX's own SLURM detection would choose (a job-dependent
# port in 61440..65535), so two jobs sharing a first node do not collide.
default_coordinator_port() {
  echo $(( $1 % 4096 + 61440 ))
}

# comma_range N: "0,1,...,N-1".
comma_range() {
  local n="$1" i out=()
  for (( i = 0; i < n; i++ )); do
    out+=("${i}")
  done
  local IFS=,
  echo "${out[*]}"
}
