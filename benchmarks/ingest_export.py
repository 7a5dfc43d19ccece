"""Store + export cost against plain ASE I/O of the same frames, measured in the same run.

    python -m benchmarks.ingest_export [--data ../shared/data/Cu-II.extxyz] [--repeats 3]

Baseline: ase.io.read of the file plus ase.io.write of the frames as extxyz.
Ours: ingest (read, validate, fingerprint, store in ase.db) plus export (harvest, split, write).
Goal: ours costs at most 2x the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ase.io

from mlip_autopipec.data.export import ALL_FORMATS, export_dataset
from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.harvest import harvest_for_export
from mlip_autopipec.store.ingest import ingest_file

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "Cu-II.extxyz"


def plain_ase(data: Path, work: Path) -> float:
    start = time.perf_counter()
    frames = ase.io.read(data, ":")
    ase.io.write(work / "plain.extxyz", frames, format="extxyz")
    return time.perf_counter() - start


def store_and_export(data: Path, work: Path, formats: tuple[str, ...]) -> tuple[float, float]:
    start = time.perf_counter()
    store = StructureStore(work / "structures.db")
    report = ingest_file(store, data)
    assert report.rejected == 0, report.problems[:3]
    ingested = time.perf_counter()
    export_dataset(harvest_for_export(store), work / "dataset", formats=formats)
    return ingested - start, time.perf_counter() - ingested


PHASES = {  # (file, function) of cProfile -> what it is
    ("extxyz.py", "read_xyz"): "ase.io reading the file (the baseline's read)",
    ("validation.py", "frame_problems"): "validation (finite values, close atoms, elements)",
    ("fingerprint.py", "fingerprint"): "structure fingerprints (duplicates)",
    ("core.py", "write"): "ase.db writing rows",
    ("structure_store.py", "harvest"): "ase.db reading rows back",
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
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each measurement")
    parser.add_argument("--profile", action="store_true", help="also print where ingest + export spend their time")
    args = parser.parse_args()
    n_frames = len(ase.io.read(args.data, ":"))

    rows = []
    for label, formats in (("extxyz only", ("extxyz",)), ("all formats", ALL_FORMATS)):
        best_plain, best_ingest, best_export = float("inf"), float("inf"), float("inf")
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as work:
                best_plain = min(best_plain, plain_ase(args.data, Path(work)))
            with tempfile.TemporaryDirectory() as work:
                ingest_s, export_s = store_and_export(args.data, Path(work), formats)
                if ingest_s + export_s < best_ingest + best_export:
                    best_ingest, best_export = ingest_s, export_s
        rows.append((label, best_plain, best_ingest, best_export))

    if args.profile:
        profile(args.data)
    print(f"{args.data.name}: {n_frames} frames, best of {args.repeats}")
    print(f"{'export':<12} {'plain ASE s':>11} {'ingest s':>9} {'export s':>9} {'ratio':>6}  goal <= 2.0")
    for label, plain, ingest_s, export_s in rows:
        print(f"{label:<12} {plain:>11.2f} {ingest_s:>9.2f} {export_s:>9.2f} {(ingest_s + export_s) / plain:>6.2f}")


if __name__ == "__main__":
    main()
