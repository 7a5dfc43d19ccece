#!/usr/bin/env bash
# The FairChem backend's own interpreter (EquiformerV2, GemNet-OC), from PyPI alone.
#
#   scripts/setup_fairchem.sh [VENV_DIR]          # default: .venv-fairchem at the project root
#
# fairchem-core 1.10 is the last release that trains EquiformerV2 / GemNet-OC. It needs torch ~2.4 and
# numpy <2, and imports torch_scatter (GemNet-OC also torch_sparse), which PyPI has only as sources:
# they are compiled here against the installed torch, CPU kernels only, one compiler job at a time.
# None of this can share the main .venv (Pacemaker needs numpy >=2), hence a second interpreter that
# run.yaml's `backend_python` (or MLIP_FAIRCHEM_PYTHON) points at.
#
# PyPI's Linux torch 2.4 wheel is a CUDA build: it pulls ~2.5 GB of nvidia-* wheels, and the
# environment ends up ~6 GB. It trains on the CPU as well (the backend passes --cpu when asked).
# A rerun with everything in place only re-checks the imports; a failed run removes what it built.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-fairchem}"
python="${PYTHON:-python3.11}"
torch_spec="${FAIRCHEM_TORCH:-torch==2.4.1}"
fairchem_spec="fairchem-core==1.10.*"
# fairchem 1.10 imports scipy.special.sph_harm, deprecated in scipy 1.15 and since removed.
scipy_spec="scipy<1.15"
# Sources only on PyPI; the last releases, which build against torch 2.4.
compiled_specs=("torch-scatter==2.1.2" "torch-sparse==0.6.18")
stamp="$venv/.mlip-autopipec-fairchem"
wanted="$(printf '%s\n' "$torch_spec" "$scipy_spec" "${FAIRCHEM_CXX_OPT:--O3}" "$fairchem_spec" "${compiled_specs[@]}" | sha256sum | cut -d' ' -f1)"

check_imports() {
  "$venv/bin/python" - <<'EOF'
import warnings
warnings.filterwarnings("ignore", category=FutureWarning)  # torch.load defaults, inside fairchem
import numpy, torch, torch_geometric, torch_scatter, torch_sparse
import fairchem.core
from fairchem.core.common.relaxation.ase_utils import OCPCalculator  # noqa: F401
from fairchem.core.models.equiformer_v2.equiformer_v2 import EquiformerV2Backbone  # noqa: F401
from fairchem.core.models.gemnet_oc.gemnet_oc import GemNetOCBackbone  # noqa: F401
import ase.db
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__}: fairchem 1.10 needs numpy <2"
print(f"fairchem-core {fairchem.core.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"torch_geometric {torch_geometric.__version__}, torch_scatter {torch_scatter.__version__}, "
      f"torch_sparse {torch_sparse.__version__}")
EOF
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$venv/bin/python" ]]; then
  check_imports
  echo "setup_fairchem: $venv is up to date"
  exit 0
fi
if ! command -v "$python" >/dev/null; then
  echo "setup_fairchem: $python not found; fairchem-core 1.10 needs Python 3.9-3.12 (set PYTHON=...)" >&2
  exit 1
fi
if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]]; then
  echo "setup_fairchem: $venv exists and is not a virtual environment; refusing to touch it" >&2
  exit 1
fi

started=$SECONDS
fresh=0
[[ -e "$venv" ]] || fresh=1
cleanup() {
  status=$?
  if [[ $status -ne 0 && $fresh -eq 1 ]]; then
    echo "setup_fairchem: failed (status $status); removing the partial $venv" >&2
    rm -rf "$venv"
  fi
}
trap cleanup EXIT

echo "setup_fairchem: creating $venv with $("$python" --version)"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip setuptools wheel

echo "setup_fairchem: installing $torch_spec, numpy<2, $fairchem_spec (and their dependencies)"
# ase-db-backends: the `.aselmdb` format our exporter writes and fairchem's AseDBDataset reads.
"${pip[@]}" install -q "$torch_spec" "numpy<2" "$scipy_spec" "$fairchem_spec" ase-db-backends

# Built from their PyPI sources (pip download --no-binary), the two side by side, each with one
# compiler job (MAX_JOBS) under nice. FAIRCHEM_CXX_OPT replaces their -O3: -O0 compiles ~4x faster
# (small machines, CI) at the cost of slower scatter kernels. Built wheels are kept in a cache keyed
# by torch version and optimisation, so a rebuilt environment does not compile again.
torch_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
opt="${FAIRCHEM_CXX_OPT:--O3}"
wheel_cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlip-autopipec/fairchem-wheels/torch-$torch_version$opt"
mkdir -p "$wheel_cache"
build_dir="$(mktemp -d)"
missing=()
for spec in "${compiled_specs[@]}"; do
  name="${spec%%==*}"; version="${spec##*==}"
  ls "$wheel_cache/${name//-/_}-$version-"*.whl >/dev/null 2>&1 || missing+=("$spec")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup_fairchem: compiling ${missing[*]} against torch $torch_version ($opt, CPU kernels," \
       "MAX_JOBS=${MAX_JOBS:-1} each; tens of minutes on a small busy machine)"
  "${pip[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$build_dir" "${missing[@]}"
  pids=()
  for archive in "$build_dir"/*.tar.gz; do
    tar -xzf "$archive" -C "$build_dir"
    source_dir="${archive%.tar.gz}"
    sed -i "s/'-O3'/'$opt'/" "$source_dir/setup.py"
    # --no-build-isolation: their setup.py imports the torch they are built against.
    CFLAGS="-g0" MAX_JOBS="${MAX_JOBS:-1}" FORCE_ONLY_CPU=1 nice -n 10 \
      "${pip[@]}" wheel -q --no-deps --no-build-isolation -w "$wheel_cache" "$source_dir" \
      > "$source_dir.log" 2>&1 &
    pids+=("$!:$source_dir")
  done
  for entry in "${pids[@]}"; do
    if ! wait "${entry%%:*}"; then
      echo "setup_fairchem: building ${entry#*:} failed; its log:" >&2
      tail -40 "${entry#*:}.log" >&2
      exit 1
    fi
  done
fi
"${pip[@]}" install -q --no-deps "$wheel_cache"/*.whl
rm -rf "$build_dir"

check_imports
echo "$wanted" > "$stamp"
echo "setup_fairchem: done in $((SECONDS - started)) s; size $(du -sh "$venv" | cut -f1)"
echo "setup_fairchem: use it with  export MLIP_FAIRCHEM_PYTHON=$venv/bin/python  (or run.yaml backend_python)"
