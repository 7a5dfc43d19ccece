"""The held-out MD worker process: one Langevin run with the labeler as the calculator.

    python -m mlip_autopipec.labeling.md_worker JOB_DIR [--parent PID]

Reads JOB_DIR/structure.traj, calculator.json (a CalculatorSpec) and walker.json (WalkerSettings),
runs the MD and writes JOB_DIR/trajectory.extxyz atomically: the recorded snapshots with the
labeler's own energy and forces, so they need no second calculation. Progress goes to stdout
(the job's worker.log). Started and watched like the labelling worker (labeling/job.py run_worker).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import ase.io

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.exploration.md import WalkerSettings, run_walker
from mlip_autopipec.labeling.job_files import CALCULATOR_FILE, STRUCTURE_FILE, TRAJECTORY_FILE, WALKER_FILE
from mlip_autopipec.processes import watch_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlip_autopipec.labeling.md_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--parent", type=int, default=os.getppid(), metavar="PID")
    args = parser.parse_args(argv)
    watch_parent(args.parent)
    job_dir = args.job_dir
    atoms = ase.io.read(job_dir / STRUCTURE_FILE, format="traj")
    spec = CalculatorSpec.model_validate_json((job_dir / CALCULATOR_FILE).read_text())
    settings = WalkerSettings(**json.loads((job_dir / WALKER_FILE).read_text()))

    def progress(done: int, total: int) -> None:
        print(f"step {done}/{total}", flush=True)

    run_walker(atoms, spec.build(), settings, job_dir / TRAJECTORY_FILE, progress=progress, keep_labels=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
