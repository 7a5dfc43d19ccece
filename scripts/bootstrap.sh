#!/usr/bin/env bash
# The project's single install path (README, CI, Docker images): creates .venv at the project root
# and installs the pinned stack. A second run with unchanged requirements only checks a stamp.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
python="${PYTHON:-python3}"

stamp_inputs=(requirements/base.txt requirements/nodeps.txt requirements/dft.txt pyproject.toml scripts/bootstrap.sh)
wanted="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.mlip-autopipec-installed"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$venv/bin/python" ]]; then
  echo "bootstrap: .venv is up to date"
  exit 0
fi

# C libraries GPAW (real DFT labels) is built against; Debian packages.
dft_apt=(libxc-dev libopenblas-dev libfftw3-dev libopenmpi-dev)
with_dft=1
if ! dpkg -s "${dft_apt[@]}" >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install ${dft_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${dft_apt[@]}" >/dev/null
  else
    echo "bootstrap: skipping GPAW; to label with real DFT first run: sudo apt-get install ${dft_apt[*]}"
    with_dft=0
  fi
fi

# Headless rendering and the UI check: OVITO's wheel renders through Vulkan (mesa's software driver,
# no GPU or display needed) and Qt; Debian's chromium opens the Prefect UI in tests. Optional.
view_apt=(libvulkan1 mesa-vulkan-drivers libegl1 libgl1 libfontconfig1 libxkbcommon0 libdbus-1-3 fonts-dejavu-core chromium)
if ! dpkg -s "${view_apt[@]}" >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install ${view_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${view_apt[@]}" >/dev/null
  else
    echo "bootstrap: to render trajectories and check the UI first run: sudo apt-get install ${view_apt[*]}"
  fi
fi

# PostgreSQL server binaries: the tests start a throw-away server (tests/postgres.py) for the store and
# the Prefect server on PostgreSQL. MLIP_WITH_POSTGRES=0 leaves them out (worker images: the server
# runs elsewhere); without root the PostgreSQL tests are skipped.
if [[ "${MLIP_WITH_POSTGRES:-1}" == 1 ]] && ! dpkg -s postgresql >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "bootstrap: PostgreSQL tests will be skipped; to run them first run: sudo apt-get install postgresql"
  fi
fi

# SLURM (slurm-wlm, munge): the tests start a throw-away single-node cluster (tests/slurm.py) to label
# through sbatch. MLIP_WITH_SLURM=0 leaves it out; without root the SLURM tests are skipped. The system's
# slurmctld/slurmd stay down (Debian ships no /etc/slurm/slurm.conf); the tests use their own config,
# munge key and socket, so a system munged (systemd starts one) is not in their way.
if [[ "${MLIP_WITH_SLURM:-1}" == 1 ]] && ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install slurm-wlm munge"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "bootstrap: SLURM tests will be skipped; to run them first run: sudo apt-get install slurm-wlm munge"
  fi
fi

echo "bootstrap: installing into $venv (first run takes several minutes)"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip wheel setuptools
"${pip[@]}" install -r requirements/base.txt
# tensorpotential's metadata drags in CUDA wheels; its real needs are in base.txt.
"${pip[@]}" install --no-deps -r requirements/nodeps.txt
if [[ "$with_dft" == 1 ]]; then
  "${pip[@]}" install -r requirements/dft.txt
fi
"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$wanted" > "$stamp"
echo "bootstrap: done"
