"""Fit Cu-II (1000 DFT structures) with a mid-size ACE basis: accuracy, time, memory, and the
orchestration overhead of `python -m flows.train` against running Pacemaker's tools by hand.

    python -m benchmarks.pacemaker_fit [--data ../shared/data/Cu-II.extxyz] [--maxiter 200] [--repeats 2]

Both runs fit the same exported dataset with the same input.yaml: first the flow (ingest, export,
train with pacemaker + pace_yaml2yace + pace_activeset, evaluate, publish, on the Prefect API the
command finds: PREFECT_API_URL or the local server), then the three Pacemaker commands by hand in a
fresh directory; with --repeats the pairs alternate (flow, by hand, flow, by hand, ...) so that a
change in the machine's load hits both sides. Peak memory is the largest resident set of the whole
process tree, sampled every 0.2 s. The fit itself (Pacemaker's own span) is the same work on both
sides but its speed follows the load; the time outside it is what the flow adds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.backends.pacemaker.trainer import active_set_arguments
from mlip_autopipec.config.training import PacemakerConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Cu-II.extxyz"
BIN = Path(sys.executable).parent

# The documented mid-size basis: 25 functions, up to 4-body, 5 Å cutoff.
MID_SIZE = dict(cutoff=5.0, number_of_functions_per_element=25, nradmax_by_orders=[8, 4, 3],
                lmax_by_orders=[0, 2, 1], batch_size=200, display_step=50, repulsion=None,
                timeout_seconds=7200)


def run_measured(command: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of the process tree of `command`; its output goes to `log`
    (a file, not a pipe: an unread pipe fills up and blocks a chatty tool)."""
    start = time.perf_counter()
    with open(log, "ab") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed; see {log}")
    return time.perf_counter() - start, peak / 2**30


def fit_seconds(pacemaker_log: Path) -> float:
    """Pacemaker's own span (first to last time-stamped line of its log.txt): the fit itself,
    whose speed depends on the machine's load, separated from everything around it."""
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
              for line in pacemaker_log.read_text().splitlines() if line[:4].isdigit() and line[23:24] == " "]
    return (stamps[-1] - stamps[0]).total_seconds()


def run_pair(args, config: PacemakerConfig, work: Path, index: int) -> dict:
    """One flow run, then the same fit by hand; wall, fit and peak memory of each."""
    load = os.getloadavg()[0]
    flow_dir, direct = work / f"flow-{index}", work / f"direct-{index}"
    for directory in (flow_dir, direct):
        shutil.rmtree(directory, ignore_errors=True)
    flow_s, flow_gib = run_measured([sys.executable, "-m", "flows.train", "--config", str(work / "train.yaml"),
                                     "--data", str(args.data.resolve()), "--out", str(flow_dir),
                                     # a block name of its own: earlier runs on the same server keep theirs
                                     "--name", f"pacemaker-bench-{time.time_ns()}"], ROOT,
                                    work / f"flow-{index}.log")
    artifact = PotentialArtifact.load(next((flow_dir / "generations").glob("gen-*/artifact.json")))

    direct.mkdir()
    shutil.copy(artifact.generation_dir / "input.yaml", direct / "input.yaml")
    log = direct / "commands.log"
    fit_s, fit_gib = run_measured([str(BIN / "pacemaker"), "input.yaml"], direct, log)
    shutil.copy(direct / "output_potential.yaml", direct / "potential.yaml")
    yace_s, _ = run_measured([str(BIN / "pace_yaml2yace"), "potential.yaml", "-o", "potential.yace"], direct, log)
    asi_s, _ = run_measured([str(BIN / "pace_activeset"), *active_set_arguments(config)], direct, log)
    return {"artifact": artifact, "flow_s": flow_s, "flow_gib": flow_gib, "direct_s": fit_s + yace_s + asi_s,
            "direct_gib": fit_gib, "flow_fit": fit_seconds(artifact.generation_dir / "log.txt"),
            "direct_fit": fit_seconds(direct / "log.txt"), "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--maxiter", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="alternating pairs of runs (flow, then by hand)")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args()
    config = PacemakerConfig(**MID_SIZE, maxiter=args.maxiter)
    work = Path(args.keep or tempfile.mkdtemp(prefix="pacemaker-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.yaml").write_text(yaml.safe_dump(
        {"campaign": "cu-ii-bench", "export": {"test_fraction": 0.1, "seed": 0},
         "training": config.model_dump(mode="json")}))

    print(f"{'pair':<5} {'load':>5} {'flow s':>8} {'by hand s':>10} {'ratio':>6} {'fit flow/hand s':>16} "
          f"{'outside fit flow/hand s':>24} {'peak GiB flow/hand':>19}", flush=True)
    pairs = []
    for index in range(args.repeats):
        pair = run_pair(args, config, work, index)
        pairs.append(pair)
        print(f"{index:<5} {pair['load']:>5.1f} {pair['flow_s']:>8.1f} {pair['direct_s']:>10.1f} "
              f"{pair['flow_s'] / pair['direct_s']:>6.3f} {pair['flow_fit']:>8.1f} / {pair['direct_fit']:<6.1f} "
              f"{pair['flow_s'] - pair['flow_fit']:>15.1f} / {pair['direct_s'] - pair['direct_fit']:<6.1f} "
              f"{pair['flow_gib']:>10.2f} / {pair['direct_gib']:.2f}", flush=True)

    artifact = pairs[-1]["artifact"]
    evaluation = json.loads((artifact.generation_dir / "report" / "evaluation-test.json").read_text())
    metrics = evaluation["metrics"]
    print(f"Cu-II ({args.data.name}): {artifact.metrics.get('n_functions', 0):.0f} functions, "
          f"{args.maxiter} BFGS iterations, test split {int(metrics['frames'])} structures")
    print(f"test energy RMSE {metrics['energy_rmse_mev_per_atom']:.2f} meV/atom, "
          f"force RMSE {metrics['forces_rmse_mev_per_angstrom']:.1f} meV/Å "
          f"(train: {artifact.metrics['train_energy_rmse_mev_per_atom']:.2f} meV/atom, "
          f"{artifact.metrics['train_forces_rmse_mev_per_angstrom']:.1f} meV/Å)")
    ratio = statistics.median(pair["flow_s"] / pair["direct_s"] for pair in pairs)
    added = statistics.median((pair["flow_s"] - pair["flow_fit"]) - (pair["direct_s"] - pair["direct_fit"])
                              for pair in pairs)
    direct_s = statistics.median(pair["direct_s"] for pair in pairs)
    print(f"orchestration overhead ratio {ratio:.3f} (median of {len(pairs)}; goal <= 1.05); the flow adds "
          f"{added:.1f} s outside the fit (median), {added / direct_s:.1%} of the run by hand "
          "(the fits' speed follows the machine's load)")
    print(f"runs kept in {work}")


if __name__ == "__main__":
    main()
