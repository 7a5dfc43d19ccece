"""MACE training throughput through our backend against `mace_run_train` called by hand with the
same arguments on the same data (goal: our wall time <= 1.05 x the direct one).

    python -m benchmarks.mace_train [--data ../shared/data/Cu-II.extxyz] [--structures 200] [--epochs 5]

MaceTrainer.train (what the training task runs: checks, subprocess with log streaming and
progress parsing, metrics, artifact) alternates with the exact `$ mace_run_train ...` line from
its log, rerun in a fresh directory on the same dataset files, `--repeats` times each (alternating,
so a machine shared with other work loads both sides alike); ratios are of the fastest runs, of wall
time and of CPU time (user + system of the whole process tree; on a busy machine the honest one).
Throughput is training structures x epochs per second of wall time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from mlip_autopipec.backends.mace import MaceTrainer
from mlip_autopipec.config.mace import MaceConfig
from mlip_autopipec.data.export import ExportItem, export_dataset
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Cu-II.extxyz"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mace_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--structures", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--max-L", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mace-bench-"))
    frames = [frame for _, frame in read_labelled_frames(args.data) if isinstance(frame, LabelledFrame)]
    frames = frames[:args.structures]
    manifest = export_dataset([ExportItem(frame, f"f{index}") for index, frame in enumerate(frames)],
                              workdir / "dataset", test_fraction=0.1, seed=0, formats=["mace", "extxyz"])
    config = MaceConfig(num_channels=args.channels, max_L=args.max_L, correlation=2, r_max=5.0,
                        epochs=args.epochs, batch_size=10, device="cpu", timeout_seconds=7200)

    ours_walls, direct_walls, ours_cpu, direct_cpu, command, artifact = [], [], [], [], None, None
    for repeat in range(args.repeats):
        started, cpu = time.perf_counter(), _cpu_seconds(include_self=True)
        artifact = MaceTrainer().train(manifest, config, workdir / f"ours-{repeat}" / "gen-000")
        ours_walls.append(time.perf_counter() - started)
        ours_cpu.append(_cpu_seconds(include_self=True) - cpu)
        if command is None:
            log = artifact.path("log").read_text()
            command = next(line[2:] for line in log.splitlines() if line.startswith("$ "))
        direct_dir = workdir / f"direct-{repeat}"
        direct_dir.mkdir()
        started, cpu = time.perf_counter(), _cpu_seconds(include_self=False)
        with open(direct_dir / "direct.log", "w") as output:
            status = subprocess.run(shlex.split(command), cwd=direct_dir, stdout=output, stderr=subprocess.STDOUT,
                                    check=False).returncode
        direct_walls.append(time.perf_counter() - started)
        direct_cpu.append(_cpu_seconds(include_self=False) - cpu)
        if status != 0:
            raise SystemExit(f"direct mace_run_train failed ({status}); see {direct_dir / 'direct.log'}")
    ours, direct = min(ours_walls), min(direct_walls)  # the least disturbed run of each

    trained = manifest.counts["train"] * (1 - config.valid_fraction)
    result = {
        "structures_train_split": manifest.counts["train"],
        "epochs": config.epochs,
        "model": f"{config.num_channels}x L{config.max_L}, correlation {config.correlation}, r_max {config.r_max}",
        "ours_wall_s": [round(wall, 2) for wall in ours_walls],
        "direct_wall_s": [round(wall, 2) for wall in direct_walls],
        "ours_cpu_s": [round(value, 2) for value in ours_cpu],
        "direct_cpu_s": [round(value, 2) for value in direct_cpu],
        "cpu_ratio_ours_over_direct": round(min(ours_cpu) / min(direct_cpu), 3),
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
        "ours_structures_per_s": round(trained * config.epochs / ours, 2),
        "direct_structures_per_s": round(trained * config.epochs / direct, 2),
        "ratio_ours_over_direct": round(ours / direct, 3),
        "test_energy_rmse_mev_per_atom": artifact.metrics.get("test_energy_rmse_mev_per_atom"),
        "test_forces_rmse_mev_per_angstrom": artifact.metrics.get("test_forces_rmse_mev_per_angstrom"),
        "workdir": str(workdir),
    }
    print(json.dumps(result, indent=1))
    return result


def _cpu_seconds(include_self: bool) -> float:
    """User + system CPU of finished children (and of this process): robust on a shared machine,
    where wall time mostly measures the neighbours."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    if include_self:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total += own.ru_utime + own.ru_stime
    return total


if __name__ == "__main__":
    main()
