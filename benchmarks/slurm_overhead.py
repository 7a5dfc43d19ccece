"""What labelling through SLURM costs per structure, against the same labels computed directly.

    python -m benchmarks.slurm_overhead [--structures 8] [--cost 1.0] [--poll 1.0]   # as root, from the project root

It starts tests/slurm.py's single-node cluster. Overhead: the same N Cu-II cells (shared/data), labelled
from fresh stores by EMT plus a fixed sleep of --cost seconds (benchmarks.labeling_throughput.SlowEMT: a
DFT cost paid elsewhere; on this machine's 2 shared cores a CPU-bound DFT code would time the
neighbours' load, not the scheduler):

* direct       label_pending, one worker process at a time, no scheduler;
* slurm 1/job  label_pending_slurm, one structure per job, one job at a time;
* slurm N/job  label_pending_slurm, all N structures in one job.

    overhead per structure = (wall time - direct wall time) / N

It includes sbatch, the wait for the scheduler to start the job (on an idle cluster), the job's Python
start-up, the poll interval (--poll) before the ended job is noticed, and storing. Agreement: two tiny
GPAW cells (2 Cu atoms, LDA, 200 eV, 2 k-points) labelled directly (serial) and in one SLURM job on 2
MPI ranks each (mpiexec -n 2); the largest energy and force differences. Results:
benchmarks/results/slurm_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "slurm_overhead.json"
GPAW = {"mode": {"name": "pw", "ecut": 200}, "xc": "LDA", "kpts": {"size": [1, 1, 2], "gamma": True}, "txt": "gpaw.txt"}


def cells(count: int):
    from ase.build import bulk

    structures = []
    for seed in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)[:2]
        atoms.cell = [2.6, 2.6, 3.6]
        atoms.rattle(0.05, seed=seed)
        structures.append(atoms)
    return structures


def cu_ii(count: int):
    import ase.io

    return [atoms for atoms in ase.io.read(ROOT.parent / "shared" / "data" / "Cu-II.extxyz", f":{count}")]


def fresh_store(path: Path, structures):
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.store import NewStructure, Status, StructureStore

    store = StructureStore(path, campaign="bench")
    store.add([NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING) for atoms in structures])
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=8)
    parser.add_argument("--cost", type=float, default=1.0, help="seconds of sleep per structure (default 1)")
    parser.add_argument("--poll", type=float, default=1.0, help="squeue poll interval, seconds (default 1)")
    args = parser.parse_args(argv)

    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.config.execution import SlurmSettings
    from mlip_autopipec.labeling import label_pending, label_pending_slurm
    from tests.slurm import slurm_missing, start_cluster, stop_cluster

    reason = slurm_missing()
    if reason:
        raise SystemExit(f"cannot start the SLURM cluster: {reason}")
    os.chdir(ROOT)  # the job imports benchmarks.labeling_throughput from its working directory
    slow = CalculatorSpec(factory="benchmarks.labeling_throughput:SlowEMT", kwargs={"cost_s": args.cost})
    structures, gpaw_cells = cu_ii(args.structures), cells(2)
    n = len(structures)
    work = Path(tempfile.mkdtemp(prefix="mlip-slurm-bench-"))
    (work / "cluster").mkdir()
    cluster = start_cluster(work / "cluster")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    common = {"max_jobs": 1, "poll_s": args.poll, "walltime": "00:30:00"}
    results: dict[str, dict] = {}

    def timed(name, label, frames=structures):
        store = fresh_store(work / f"{name}.db", frames)
        clock = time.perf_counter()
        report = label(store, work / name)
        wall = time.perf_counter() - clock
        assert not report.failed and not report.errors, report.errors
        return wall, {row.id: row.frame for row in store.harvest()}, report

    try:
        direct_s, _, _ = timed("direct", lambda store, where: label_pending(store, slow, workers=1, workdir=where))
        results["direct"] = {"wall_s": round(direct_s, 2), "per_structure_s": round(direct_s / n, 3)}
        print(f"direct: {direct_s:.1f} s ({direct_s / n:.2f} s per structure)")
        for per_job in (1, n):
            settings = SlurmSettings(structures_per_job=per_job, **common)
            name = f"slurm {per_job}/job"
            wall, _, report = timed(name.replace(" ", "-").replace("/", "-"),
                                    lambda store, where: label_pending_slurm(store, slow, settings, workdir=where))
            queued = [job["queued_s"] for job in report.jobs]
            results[name] = {"wall_s": round(wall, 2), "per_structure_s": round(wall / n, 3),
                             "overhead_per_structure_s": round((wall - direct_s) / n, 3), "jobs": len(report.jobs),
                             "mean_queue_wait_s": round(sum(queued) / len(queued), 2)}
            print(f"{name}: {wall:.1f} s, overhead {(wall - direct_s) / n:+.2f} s per structure, "
                  f"{len(report.jobs)} jobs, mean wait for the job to start {sum(queued) / len(queued):.1f} s")

        gpaw = CalculatorSpec(factory="gpaw", kwargs=GPAW)
        serial_s, serial, _ = timed("gpaw", lambda store, where: label_pending(store, gpaw, workdir=where,
                                                                                timeout_s=900), gpaw_cells)
        mpi = SlurmSettings(structures_per_job=2, ntasks=2, mpi_command="mpiexec -n 2 --oversubscribe",
                            environment={"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"},
                            **common)
        mpi_s, parallel, _ = timed("gpaw-mpi", lambda store, where: label_pending_slurm(
            store, gpaw, mpi, workdir=where, timeout_s=900), gpaw_cells)
        energy = max(abs(parallel[i].energy - serial[i].energy) for i in serial)
        forces = max(float(np.abs(parallel[i].forces - serial[i].forces).max()) for i in serial)
        results["gpaw serial direct vs 2 MPI ranks in SLURM"] = {
            "structures": 2, "serial_wall_s": round(serial_s, 2), "slurm_mpi_wall_s": round(mpi_s, 2),
            "max_energy_difference_eV": energy, "max_force_difference_eV_per_A": forces}
        print(f"GPAW serial {serial_s:.1f} s vs SLURM 2 ranks {mpi_s:.1f} s: |dE| <= {energy:.1e} eV, "
              f"|dF| <= {forces:.1e} eV/Å")
    finally:
        stop_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"structures": n, "cost_s": args.cost, "poll_s": args.poll, "gpaw": GPAW,
                                   "machine": f"{platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
                                   "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
