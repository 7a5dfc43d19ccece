"""Labelling throughput (structures/min) with 1, 2 and 4 workers: the library's thread pool, the label
flow on Prefect's thread pool, on a temporary Dask LocalCluster and on a Dask cluster already running;
and the orchestration overhead per labelled structure, all measured in the same run.

    python -m benchmarks.labeling_throughput [--structures 16] [--cost 1.0] [--workers 1 2 4] [--repeats 2]

The structures are the first N frames of shared/data/Cu-II.extxyz (real DFT Cu cells, relabelled).
The labeller is EMT plus a fixed sleep of --cost seconds per structure (`SlowEMT` below). Why not a
real GPAW cell: this machine has 2 CPU cores shared with other people's test runs, so a CPU-bound
calculator with 4 workers would measure the neighbours' load, not the orchestration. The sleep stands
for a DFT job whose cost is paid elsewhere (MPI ranks, a cluster node): what remains on this machine is
exactly what the runner changes - the worker process per structure, claims and records in the store,
Prefect task runs, Dask scheduling.

    overhead per structure = (flow wall time - library wall time, same workers) / N
    ideal structures/min   = 60 * workers / cost  (no start-up, no orchestration)

Every configuration starts from its own store with the same N pending rows. Flow times include
everything a `python -m flows.label` user waits for after the Prefect API is up: the flow run, and for
"dask (temporary)" starting and stopping the LocalCluster. Results: benchmarks/results/labeling_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from ase.calculators.emt import EMT

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "Cu-II.extxyz"
RESULTS = ROOT / "benchmarks" / "results" / "labeling_throughput.json"
# "dask (cold)" is the first labelling run on a cluster whose worker processes just started (they import
# Prefect and the project on their first task); "dask (running)" the next one on the same cluster.
RUNNERS = ("library", "threads", "dask (temporary)", "dask (cold)", "dask (running)")


class SlowEMT(EMT):
    """EMT that takes `cost_s` longer per calculation, like a DFT job running somewhere else."""

    def __init__(self, cost_s: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.cost_s = cost_s

    def calculate(self, *args, **kwargs):
        time.sleep(self.cost_s)
        super().calculate(*args, **kwargs)


def pending_store(path: Path, frames) -> str:
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.store import NewStructure, Status, StructureStore

    store = StructureStore(path, campaign="bench")
    store.add([NewStructure(LabelledFrame(frame.atoms, None, None), "Cu-II", status=Status.PENDING)
               for frame in frames])
    return store.url


def run_once(runner: str, workers: int, store_url: str, spec, address: str | None) -> float:
    """Label every pending row of `store_url`; returns the wall time."""
    from flows.label import label
    from mlip_autopipec.config.execution import ExecutionSettings
    from mlip_autopipec.labeling import label_pending
    from mlip_autopipec.store import StructureStore
    from tasks.runners import build_task_runner, prefect_api_for_workers

    start = time.perf_counter()
    if runner == "library":
        label_pending(StructureStore(store_url, campaign="bench"), spec, workers=workers, timeout_s=600)
    else:
        settings = {"threads": ExecutionSettings(workers=workers),
                    "dask (temporary)": ExecutionSettings(task_runner="dask", workers=workers,
                                                          dask_cluster_kwargs={"dashboard_address": ":0"}),
                    }.get(runner, ExecutionSettings(task_runner="dask", workers=workers, dask_address=address))
        with prefect_api_for_workers(settings):
            label.with_options(task_runner=build_task_runner(settings))(
                store_url, spec.model_dump(mode="json"), campaign="bench", workers=workers, timeout_s=600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=16, help="N (default: 16)")
    parser.add_argument("--cost", type=float, default=1.0, help="seconds slept per structure (default: 1.0)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of every configuration, each on a fresh cluster; the table shows medians")
    args = parser.parse_args()
    os.chdir(ROOT)  # the labelling workers import benchmarks.labeling_throughput:SlowEMT from here

    from distributed import LocalCluster
    from prefect import flow

    from mlip_autopipec.calculators import CalculatorSpec
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames
    from mlip_autopipec.store import StructureStore

    frames = [frame for _, frame in read_labelled_frames(DATA) if isinstance(frame, LabelledFrame)]
    frames = frames[:args.structures]
    spec = CalculatorSpec(factory="benchmarks.labeling_throughput:SlowEMT", kwargs={"cost_s": args.cost})
    flow(name="warm-up")(lambda: None)()  # start the (ephemeral) Prefect API before timing anything
    work = Path(tempfile.mkdtemp(prefix="labeling-bench-"))
    runs = []
    for workers in args.workers:
        for repeat in range(args.repeats):
            with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster:
                for runner in RUNNERS:  # one worker count at a time, so load changes hit all runners alike
                    name = f"{re.sub(r'[^a-z]+', '-', runner)}{workers}-{repeat}.db"
                    store_url = pending_store(work / name, frames)
                    seconds = run_once(runner, workers, store_url, spec, cluster.scheduler_address)
                    counts = StructureStore(store_url, campaign="bench").status_counts()
                    runs.append({"runner": runner, "workers": workers, "seconds": seconds,
                                 "completed": counts["completed"], "failed": counts["failed"]})
                    print(f"  {runner:<17} {workers} workers: {seconds:6.1f} s, {counts}", flush=True)

    n = len(frames)
    rows = []
    for workers in args.workers:
        for runner in RUNNERS:
            mine = [run for run in runs if run["runner"] == runner and run["workers"] == workers]
            rows.append({"runner": runner, "workers": workers,
                         "seconds": statistics.median(run["seconds"] for run in mine),
                         "completed": min(run["completed"] for run in mine)})
    library = {row["workers"]: row["seconds"] for row in rows if row["runner"] == "library"}
    print(f"\n{n} Cu-II structures, EMT + {args.cost:g} s sleep each, median of {args.repeats}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'runner':<17} {'workers':>7} {'wall s':>7} {'structures/min':>14} {'vs ideal':>8} "
          f"{'vs library':>10} {'overhead s/structure':>20}")
    for row in rows:
        per_min = 60 * row["completed"] / row["seconds"]
        row["structures_per_min"] = per_min
        row["fraction_of_ideal"] = per_min / (60 * row["workers"] / args.cost)
        row["ratio_to_library"] = row["seconds"] / library[row["workers"]]
        row["overhead_s_per_structure"] = (row["seconds"] - library[row["workers"]]) / n
        print(f"{row['runner']:<17} {row['workers']:>7} {row['seconds']:>7.1f} {per_min:>14.1f} "
              f"{row['fraction_of_ideal']:>8.2f} {row['ratio_to_library']:>10.2f} "
              f"{row['overhead_s_per_structure']:>20.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"structures": n, "cost_s": args.cost, "host": platform.node(),
                                   "cpu_count": os.cpu_count(), "loadavg_after": os.getloadavg(),
                                   "repeats": args.repeats, "work": str(work), "rows": rows, "runs": runs},
                                  indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
