#!/usr/bin/env bash
# The install steps of every worker image, in one script so that CI runs them too (tests/docker):
#
#   docker/install-worker.sh KIND        KIND: pace | torch | dft | render
#
# 1. Debian packages the image needs beyond the project's own install path (a compiler for GPAW's C
#    extension, MPI's launcher), as root; 2. the project's single install path, scripts/bootstrap.sh
#    (the pinned stack into .venv, GPAW's and OVITO's system libraries as root); 3. with MLIP_CUDA=1 (the
#    GPU images), the CUDA build of TensorFlow for pace (PyPI's torch wheel for Linux is already the
#    CUDA build); 4. docker/check_worker.py KIND: what the worker runs is installed and importable.
# Without root a missing Debian package is an error naming the apt-get command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

kind="${1:-}"
case "$kind" in
  pace | torch) apt=(build-essential) ;;
  dft) apt=(build-essential openmpi-bin) ;;
  render) apt=(build-essential) ;;
  *)
    echo "usage: docker/install-worker.sh pace|torch|dft|render" >&2
    exit 2
    ;;
esac

if ! dpkg -s "${apt[@]}" >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "install-worker: missing Debian packages; first run: sudo apt-get install ${apt[*]}" >&2
    exit 1
  fi
  echo "install-worker: apt-get install ${apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
fi

# The worker images talk to a PostgreSQL server elsewhere (docker-compose.yml): no server binaries.
MLIP_WITH_POSTGRES=0 scripts/bootstrap.sh

if [[ "${MLIP_CUDA:-0}" == 1 && "$kind" == pace ]]; then
  # Same TensorFlow as requirements/base.txt, with NVIDIA's CUDA and cuDNN wheels beside it.
  tensorflow_pin="$(grep -E '^tensorflow==' requirements/base.txt)"
  .venv/bin/python -m pip install --disable-pip-version-check "tensorflow[and-cuda]${tensorflow_pin#tensorflow}"
fi

.venv/bin/python docker/check_worker.py "$kind"
