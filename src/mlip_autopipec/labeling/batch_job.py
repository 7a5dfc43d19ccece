"""What one SLURM (or PBS) labelling job runs: the structures of one batch, one after another.

    python -m mlip_autopipec.labeling.batch_job BATCH_DIR

BATCH_DIR/batch.json names the structures (BATCH_DIR/structure-<id>/structure.traj each), the
calculator spec, the per-structure timeout and the MPI launcher. Each structure is labelled in its
own worker process (labeling.job.label_structure: the same worker, timeout and checks as a local
label), and its outcome goes to structure-<id>/outcome.json the moment it is known: {"ok": true,
"compute_seconds", "seconds"} with the labels in result.json, or {"error": reason}. A structure
with an outcome is skipped, so nothing is computed twice. The job never touches the store: the
submitting process reads the outcomes after the job has ended (labeling/slurm.py), so a job
killed half-way (scancel, walltime, node failure) loses only the structures it had not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import ase.io

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.labeling.job import LabelingError, label_structure
from mlip_autopipec.labeling.job_files import STRUCTURE_FILE

BATCH_FILE = "batch.json"  # {"rows": [...], "calculator": spec, "timeout_s", "min_distance", "mpi_command"}
OUTCOME_FILE = "outcome.json"


def structure_dir(batch_dir: Path, row_id: int) -> Path:
    return batch_dir / f"structure-{row_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlip_autopipec.labeling.batch_job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("batch_dir", type=Path)
    batch_dir = parser.parse_args(argv).batch_dir.resolve()
    batch = json.loads((batch_dir / BATCH_FILE).read_text())
    spec = CalculatorSpec.model_validate(batch["calculator"])
    launcher = shlex.split(batch.get("mpi_command") or "")
    if launcher:  # GPAW under a launcher in plain python (not `gpaw python`) needs its MPI backend named
        os.environ.setdefault("GPAW_MPI_BACKEND", "cgpaw")
    for row_id in batch["rows"]:
        job_dir = structure_dir(batch_dir, row_id)
        if (job_dir / OUTCOME_FILE).exists():
            continue
        clock = time.perf_counter()
        try:
            atoms = ase.io.read(job_dir / STRUCTURE_FILE, format="traj")
            result = label_structure(atoms, spec, job_dir, float(batch["timeout_s"]),
                                     min_distance=float(batch["min_distance"]), launcher=launcher)
            outcome = {"ok": True, "compute_seconds": result.compute_seconds}
        except Exception as exc:  # LabelingError, disk trouble, anything unexpected: this structure only
            outcome = {"ok": False, "error": str(exc) if isinstance(exc, LabelingError) else
                       f"{type(exc).__name__}: {exc}"}
        outcome["seconds"] = time.perf_counter() - clock
        atomic_write_text(job_dir / OUTCOME_FILE, json.dumps(outcome))
        print(f"structure {row_id}: {'labelled' if outcome['ok'] else 'failed'} in {outcome['seconds']:.2f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
