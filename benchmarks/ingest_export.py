"""Store + export cost against plain ASE I/O of the same frames, measured in the same run.

    python -m benchmarks.ingest_export [--data ../shared/data/Cu-II.extxyz] [--repeats 5]

Baseline: ase.io.read of the file plus ase.io.write of the frames as extxyz.
Ours: ingest (read, validate, fingerprint, store in ase.db) plus export (split, write) of the rows
just written, as `flows.train --data` does (`ingest_for_export`); also, for comparison, the same
with the rows read back from the store (`ingest_file`, then `harvest_for_export`). Each repeat runs
the three in turn; the table shows medians. Goal: ours costs at most 2x the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ase.io

from mlip_autopipec.data.export import ALL_FORMATS, export_dataset
from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.harvest import harvest_for_export
from mlip_autopipec.store.ingest import ingest_file, ingest_for_export

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "Cu-II.extxyz"


def plain_ase(data: Path, work: Path) -> float:
    start = time.perf_counter()
    frames = ase.io.read(data, ":")
    ase.io.write(work / "plain.extxyz", frames, format="extxyz")
    return time.perf_counter() - start


def store_and_export(data: Path, work: Path, formats: tuple[str, ...], read_back: bool = False) -> tuple[float, float]:
    """Seconds to ingest and to export; with `read_back`, export what the store returns for its rows."""
    start = time.perf_counter()
    store = StructureStore(work / "structures.db")
    if read_back:
        report = ingest_file(store, data)
    else:
        ingested = ingest_for_export(store, [data])
        assert not ingested.harvested
        report = ingested.report
    assert report.rejected == 0, report.problems[:3]
    ingested_at = time.perf_counter()
    items = harvest_for_export(store) if read_back else ingested.items
    export_dataset(items, work / "dataset", formats=formats)
    return ingested_at - start, time.perf_counter() - ingested_at


PHASES = {  # (file, function) of cProfile -> what it is
    ("extxyz.py", "read_xyz"): "ase.io reading the file (the baseline's read)",
    ("validation.py", "frame_problems"): "validation (finite values, close atoms, elements)",
    ("fingerprint.py", "fingerprint"): "structure fingerprints (duplicates)",
    ("core.py", "write"): "ase.db writing rows",
    ("structure_store.py", "_stored"): "export items from the rows written",
    ("export.py", "export_dataset"): "split + writing the extxyz file",
}


def profile(data: Path) -> None:
    """Cumulative seconds per phase of one ingest + export (extxyz), under cProfile (slower overall)."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory() as work:
        profiler = cProfile.Profile()
        profiler.runcall(store_and_export, data, Path(work), ("extxyz",))
    stats = pstats.Stats(profiler).stats
    total = sum(entry[2] for entry in stats.values())  # total internal time
    print(f"profile of one ingest + export (cProfile, {total:.2f} s in all):")
    for (file, _, function), (_, _, _, cumulative, _) in sorted(stats.items(), key=lambda item: -item[1][3]):
        for (suffix, name), label in PHASES.items():
            if file.endswith(suffix) and function == name:
                print(f"  {label:<52} {cumulative:>6.2f} s  {100 * cumulative / total:>4.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement (medians shown)")
    parser.add_argument("--profile", action="store_true", help="also print where ingest + export spend their time")
    args = parser.parse_args()
    n_frames = len(ase.io.read(args.data, ":"))

    rows = []
    for label, formats in (("extxyz only", ("extxyz",)), ("all formats", ALL_FORMATS)):
        plain, ours, read_back = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as work:
                plain.append(plain_ase(args.data, Path(work)))
            with tempfile.TemporaryDirectory() as work:
                ours.append(store_and_export(args.data, Path(work), formats))
            with tempfile.TemporaryDirectory() as work:
                read_back.append(store_and_export(args.data, Path(work), formats, read_back=True))
        rows.append((label, plain, ours, read_back))

    if args.profile:
        profile(args.data)
    print(f"{args.data.name}: {n_frames} frames, medians of {args.repeats} alternating runs")
    print(f"{'export':<12} {'plain ASE s':>11} {'ingest s':>9} {'export s':>9} {'ratio':>6} {'read back':>10}  goal <= 2.0")
    for label, plain, ours, read_back in rows:
        base = statistics.median(plain)
        print(f"{label:<12} {base:>11.2f} {statistics.median(i for i, _ in ours):>9.2f} "
              f"{statistics.median(e for _, e in ours):>9.2f} {statistics.median(map(sum, ours)) / base:>6.2f} "
              f"{statistics.median(map(sum, read_back)) / base:>10.2f}")
        print(f"{'':<12} by run: ours {' '.join(f'{sum(run) / p:.2f}' for run, p in zip(ours, plain))}; "
              f"read back {' '.join(f'{sum(run) / p:.2f}' for run, p in zip(read_back, plain))}")


if __name__ == "__main__":
    main()
