"""Fit Cu-II (1000 DFT structures) with a mid-size ACE basis: accuracy, time, memory, and the
orchestration overhead of `python -m flows.train` against running Pacemaker's tools by hand.

    python -m benchmarks.pacemaker_fit [--data ../shared/data/Cu-II.extxyz] [--maxiter 200]

Both runs fit the same exported dataset with the same input.yaml: first the flow (ingest, export,
train with pacemaker + pace_yaml2yace + pace_activeset, evaluate, publish, on a temporary Prefect
server), then the three Pacemaker commands by hand in a fresh directory. Peak memory is the
largest resident set of the whole process tree, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--maxiter", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args()
    config = PacemakerConfig(**MID_SIZE, maxiter=args.maxiter)
    work = Path(args.keep or tempfile.mkdtemp(prefix="pacemaker-bench-"))
    shutil.rmtree(work / "flow", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.yaml").write_text(yaml.safe_dump(
        {"campaign": "cu-ii-bench", "export": {"test_fraction": 0.1, "seed": 0},
         "training": config.model_dump(mode="json")}))

    flow_s, flow_gib = run_measured([sys.executable, "-m", "flows.train", "--config", str(work / "train.yaml"),
                                     "--data", str(args.data.resolve()), "--out", str(work / "flow")], ROOT,
                                    work / "flow.log")
    artifact = PotentialArtifact.load(next((work / "flow" / "generations").glob("gen-*/artifact.json")))
    evaluation = json.loads((artifact.generation_dir / "report" / "evaluation-test.json").read_text())

    direct = work / "direct"
    shutil.rmtree(direct, ignore_errors=True)
    direct.mkdir()
    shutil.copy(artifact.generation_dir / "input.yaml", direct / "input.yaml")
    log = direct / "commands.log"
    fit_s, fit_gib = run_measured([str(BIN / "pacemaker"), "input.yaml"], direct, log)
    shutil.copy(direct / "output_potential.yaml", direct / "potential.yaml")
    yace_s, _ = run_measured([str(BIN / "pace_yaml2yace"), "potential.yaml", "-o", "potential.yace"], direct, log)
    asi_s, _ = run_measured([str(BIN / "pace_activeset"), *active_set_arguments(config)], direct, log)
    direct_s = fit_s + yace_s + asi_s

    metrics = evaluation["metrics"]
    print(f"Cu-II ({args.data.name}): {artifact.metrics.get('n_functions', 0):.0f} functions, "
          f"{args.maxiter} BFGS iterations, test split {int(metrics['frames'])} structures")
    print(f"test energy RMSE {metrics['energy_rmse_mev_per_atom']:.2f} meV/atom, "
          f"force RMSE {metrics['forces_rmse_mev_per_angstrom']:.1f} meV/Å "
          f"(train: {artifact.metrics['train_energy_rmse_mev_per_atom']:.2f} meV/atom, "
          f"{artifact.metrics['train_forces_rmse_mev_per_angstrom']:.1f} meV/Å)")
    print(f"{'run':<34} {'wall s':>8} {'peak GiB':>9}")
    print(f"{'flows.train (all steps)':<34} {flow_s:>8.1f} {flow_gib:>9.2f}")
    print(f"{'pacemaker + yace + activeset':<34} {direct_s:>8.1f} {fit_gib:>9.2f}")
    flow_fit = fit_seconds(artifact.generation_dir / "log.txt")
    direct_fit = fit_seconds(direct / "log.txt")
    print(f"{'  of which the Pacemaker fit':<34} {flow_fit:>8.1f} / {direct_fit:.1f}")
    print(f"orchestration overhead ratio {flow_s / direct_s:.3f}  (goal <= 1.05); time outside the fit: "
          f"flow {flow_s - flow_fit:.1f} s, by hand {direct_s - direct_fit:.1f} s")
    print(f"runs kept in {work}")


if __name__ == "__main__":
    main()
