"""The labelling worker process: one structure, one calculator, one result file.

    python -m mlip_autopipec.labeling.worker JOB_DIR [--parent PID]

Reads JOB_DIR/structure.traj and JOB_DIR/calculator.json (a CalculatorSpec), computes energy,
forces and, for fully periodic cells with a calculator that implements it, stress, then writes
JOB_DIR/result.json atomically. Under an MPI launcher (`mpiexec -n 2 python -m
mlip_autopipec.labeling.worker JOB_DIR`, `srun ...`) every rank computes and rank 0 writes (GPAW
needs GPAW_MPI_BACKEND=cgpaw in the environment for that; labeling/batch_job.py sets it).
Any failure is an uncaught exception: a traceback on stderr and a non-zero exit, which the parent
reports. The parent runs this in its own process group with JOB_DIR as working directory (where
DFT codes leave their files). When process PID (default: the one that started the worker) is
gone, the worker kills its process group; an MPI rank, whose parent is the launcher, kills itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import ase.io

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.processes import alive, watch_parent
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.labeling.job_files import CALCULATOR_FILE, RESULT_FILE, STRUCTURE_FILE

_PARENT_POLL_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlip_autopipec.labeling.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--parent", type=int, default=os.getppid(), metavar="PID",
                        help="die with this process (default: the one that started the worker)")
    args = parser.parse_args(argv)
    # The worker runs in its own session, so signals to the parent's group never reach it; without
    # this watch a killed campaign would leave DFT runs (and their MPI ranks) computing for nobody.
    if _mpi_size() > 1:  # our parent is the MPI launcher: watch the labelling process itself
        _watch_process(args.parent)
    else:
        watch_parent(args.parent, _PARENT_POLL_S)
    job_dir = args.job_dir
    spec = CalculatorSpec.model_validate_json((job_dir / CALCULATOR_FILE).read_text())
    # The calculator first: GPAW under MPI must set up its communicator before ASE's (reading the
    # structure touches ase.parallel.world), or it refuses to run in parallel.
    calculator = spec.build()
    atoms = ase.io.read(job_dir / STRUCTURE_FILE, format="traj")
    atoms.calc = calculator

    start = time.perf_counter()
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = _stress_if_defined(atoms)
    compute_seconds = time.perf_counter() - start

    # json writes floats with repr(), which round-trips float64 exactly (NaN included).
    result = {"energy": float(energy), "forces": forces.tolist(),
              "stress": None if stress is None else stress.tolist(),
              "calculator": spec.name, "compute_seconds": compute_seconds}
    if mpi_rank() == 0:  # under an MPI launcher every rank computes; one writes
        atomic_write_text(job_dir / RESULT_FILE, json.dumps(result))
    return 0


def _watch_process(pid: int) -> None:
    """An MPI rank: SIGKILL itself (the launcher then ends the other ranks) once process `pid` is gone.
    A rank on another node than `pid` (srun across nodes) cannot see it and does not watch."""
    if not alive(pid):
        return

    def watch() -> None:
        while alive(pid):
            time.sleep(_PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="labeller-watchdog", daemon=True).start()


def _mpi_size() -> int:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


def mpi_rank() -> int:
    """This process's rank when an MPI launcher (Open MPI, MPICH/PMI, srun) started it, else 0."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


def _stress_if_defined(atoms):
    """Stress only means something for a cell periodic in all three directions."""
    if not atoms.pbc.all() or "stress" not in getattr(atoms.calc, "implemented_properties", ()):
        return None
    return atoms.get_stress(voigt=True)


if __name__ == "__main__":
    sys.exit(main())
