"""What a command costs before it does any work: a no-op command and a tiny export, against the
imports every command pays, in the same run (alternating repeats, medians).

    python -m benchmarks.command_overhead [--repeats 5]

Rows: `python -c "import prefect, mlip_autopipec"` (the baseline); `flows.export` of an empty store
(the no-op: one line, no flow, no server); `flows.export` of one structure as a flow run on the local
Prefect server that an earlier command started (flows/cli.py); the same with Prefect's default
temporary server per command (MLIP_LOCAL_SERVER=0, what every command paid before).
Goal: the no-op within 1.5x of the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(command: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode not in ok:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.store import NewStructure, StructureStore

    work = Path(tempfile.mkdtemp(prefix="command-overhead-"))
    home = work / "prefect-home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    empty, one = work / "empty.db", work / "one.db"
    StructureStore(empty).status_counts()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = EMT()
    frame = LabelledFrame(atoms.copy(), float(atoms.get_potential_energy()), atoms.get_forces().copy())
    StructureStore(one).add([NewStructure(frame=frame, source="bench")])

    python = sys.executable
    base = [python, "-c", "import prefect, mlip_autopipec"]
    noop = [python, "-m", "flows.export", "--store", str(empty), "--out", str(work / "never")]
    real = [python, "-m", "flows.export", "--store", str(one), "--formats", "extxyz", "--out"]
    try:
        cold = _timed([python, "-m", "flows.cli", "server", "start"], env)  # a first command's extra cost
        rows: dict[str, list[float]] = {"base": [], "noop": [], "local": [], "temporary": []}
        for index in range(args.repeats):
            rows["base"].append(_timed(base, env))
            rows["noop"].append(_timed(noop, env, ok=(2,)))
            rows["local"].append(_timed(real + [str(work / f"local-{index}")], env))
            rows["temporary"].append(_timed(real + [str(work / f"temp-{index}")], {**env, "MLIP_LOCAL_SERVER": "0"}))
    finally:
        subprocess.run([python, "-m", "flows.cli", "server", "stop"], cwd=ROOT, env=env, capture_output=True)
    median = {name: statistics.median(values) for name, values in rows.items()}
    labels = {"base": 'python -c "import prefect, mlip_autopipec"',
              "noop": "flows.export of an empty store (no-op)",
              "local": "flows.export of 1 structure, local server",
              "temporary": "the same, temporary server per command"}
    print(f"{args.repeats} alternating repeats on this machine (medians); starting the local server once: {cold:.1f} s")
    print(f"{'command':<48} {'median s':>9} {'ratio':>7}")
    for name, label in labels.items():
        print(f"{label:<48} {median[name]:>9.2f} {median[name] / median['base']:>7.2f}")
    print(f"no-op / imports {median['noop'] / median['base']:.2f} (goal <= 1.5); a flow run on the local server "
          f"saves {median['temporary'] - median['local']:.1f} s per command against a temporary server")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
