#!/usr/bin/env bash
# Runs on each Cloud TPU VM worker, from the copied checkout (`launch/tpu_vm.sh setup` starts it on
# all workers): makes a Python virtual environment and installs requirements.txt plus jax[tpu] at
# the jax version requirements.txt pins.
#
# Variables: VENV_DIR (default $HOME/esrgan_venv), PYTHON_VERSION (default 3.12). DRY_RUN=1 prints
# the commands instead of running them.
#
# TPU software images ship Ubuntu 22.04 and its Python 3.10, older than jax supports (>= 3.11), so
# the environment is made with uv, which fetches a standalone CPython of PYTHON_VERSION. uv is
# installed into ~/.local with the system pip.

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "${LAUNCH_DIR}")"
# shellcheck source=common.sh source-path=SCRIPTDIR
source "${LAUNCH_DIR}/common.sh"

VENV_DIR="${VENV_DIR:-${HOME}/esrgan_venv}"
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
UV="${HOME}/.local/bin/uv"

jax_version="$(pinned_version jax "${REPO_ROOT}/requirements.txt")"

if [[ ! -x "${UV}" ]]; then
  run_cmd python3 -m pip install --user --quiet --upgrade uv
fi
if [[ ! -x "${VENV_DIR}/bin/python" ]]; then
  run_cmd "${UV}" venv --python "${PYTHON_VERSION}" "${VENV_DIR}"
fi
# jax[tpu] pulls the libtpu wheel built for this exact jax release from PyPI.
run_cmd "${UV}" pip install --python "${VENV_DIR}/bin/python" \
  -r "${REPO_ROOT}/requirements.txt" "jax[tpu]==${jax_version}"
# Only the version: listing devices here would wait for the slice's other workers.
run_cmd "${VENV_DIR}/bin/python" -c 'import jax; print("jax", jax.__version__, "installed")'
