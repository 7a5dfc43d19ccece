"""Check that a worker image (or this machine) has what its worker kind runs; the last install step.

    .venv/bin/python docker/check_worker.py pace|torch|dft|render

Every kind: the project's flows, Prefect and the PostgreSQL drivers (store and Prefect server).
Per kind: the Python packages (located, not imported: TensorFlow alone takes seconds), the command-line
tools the library runs as subprocesses, and data files. With MLIP_CUDA=1 (the GPU images) it also
imports the framework and requires its CUDA build. Prints one line per item; exit code 1 names what is
missing, 2 for an unknown kind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

COMMON_MODULES = ["mlip_autopipec", "prefect", "ase", "ase_db_backends", "psycopg2", "asyncpg",
                  "flows.label", "flows.train", "flows.active_learning", "deployments.setup_server"]
KINDS = {
    # kind: (Python packages, commands from the venv, commands from the system)
    "pace": (["pyace", "tensorpotential", "tensorflow", "tf_keras"],
             ["pacemaker", "pace_activeset", "pace_select", "pace_yaml2yace"], []),
    "torch": (["torch", "mace"], ["mace_run_train", "mace_eval_configs"], []),
    "dft": (["gpaw", "gpaw_data"], ["gpaw"], ["mpirun"]),
    "render": (["ovito", "imageio_ffmpeg"], [], []),
}


def problems(kind: str) -> list[str]:
    modules, venv_commands, system_commands = KINDS[kind]
    found = []
    for module in COMMON_MODULES + modules:
        if importlib.util.find_spec(module) is None:
            found.append(f"Python package {module} is not installed")
    for command in venv_commands:
        if not os.access(BIN / command, os.X_OK):
            found.append(f"command {command} is not in {BIN}")
    for command in system_commands:
        if shutil.which(command) is None:
            found.append(f"command {command} is not on PATH")
    if kind == "dft" and not found:
        import gpaw_data

        if not list((Path(gpaw_data.__file__).parent / "setups").glob("Cu.*PBE*")):
            found.append("GPAW's PAW setups (gpaw_data/setups) hold no Cu PBE setup")
    if os.environ.get("MLIP_CUDA") == "1" and not found:
        found.extend(_cuda_problems(kind))
    return found


def _cuda_problems(kind: str) -> list[str]:
    if kind == "pace":
        import tensorflow as tf

        return [] if tf.test.is_built_with_cuda() else ["TensorFlow is not the CUDA build"]
    if kind == "torch":
        import torch

        return [] if torch.version.cuda else [f"torch {torch.__version__} is not a CUDA build"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python docker/check_worker.py {'|'.join(KINDS)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))  # flows/ and deployments/ are imported from the checkout
    kind = argv[0]
    found = problems(kind)
    for problem in found:
        print(f"check_worker {kind}: {problem}", file=sys.stderr)
    if not found:
        print(f"check_worker {kind}: ok ({sys.executable})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
