"""DFT outbox scaling: 1k / 10k / 100k candidates of 32 atoms, and grouping vs pymatgen.

    .venv/bin/python -m benchmarks.outbox_scaling [--workload triclinic|alloy] [--sizes 1000 10000 100000]
        [--processes 2] [--pymatgen 1000] [--store 3000] [--json out.json]

Workloads (32 atoms each):
- triclinic: 70 % distinct random triclinic Cu28Au4 cells, 20 % exact duplicates of one of them
  (translated, wrapped, permuted, another equivalent cell), 10 % near duplicates (rattled by
  ≤ 5 mÅ).
- alloy: random Cu-Ni orderings of one fcc cell (a = 3.55 +- 0.05 Å, one third Ni, rattled by
  0.05 Å), the hard case for a descriptor: 65 % distinct orderings, 20 % exact duplicates, 10 %
  near duplicates, 5 % one atom moved by 0.4 Å (distinct: each is a group of its own).
Reports wall time per size, the exponent of time ~ N^k fitted over the sizes, the grouping
recovered against the known truth (adjusted Rand index) and `wrongly_skipped`: candidates skipped
as a duplicate of a structure that is not theirs. With --pymatgen M the first M candidates are also
grouped by pymatgen's StructureMatcher and both are scored against the truth. With --store R the
outbox runs against a store of R rows instead (written as ingest writes them, without the outbox's
fingerprint): two calls of the first size's candidates each, drawn from the same workload, timed apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from ase import Atoms
from ase.build import bulk

from mlip_autopipec.outbox import Candidate, process_outbox

UNIMODULAR = [np.array(m) for m in ([[1, 1, 0], [0, 1, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0], [0, 0, -1]],
                                    [[1, 0, 0], [1, 1, 0], [-1, 0, 1]], [[1, 0, 1], [0, -1, 0], [0, 1, 1]])]
GRID = np.array(np.meshgrid(*[np.arange(4)] * 3, indexing="ij")).reshape(3, -1).T / 4


def distinct(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(6.5, 7.5, 3)) + rng.uniform(-1, 1, (3, 3)) * (1 - np.eye(3))
    frac = GRID[rng.choice(64, 32, replace=False)] + rng.uniform(-0.04, 0.04, (32, 3))
    numbers = np.full(32, 29)
    numbers[:4] = 79
    return Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


def alloy_ordering(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.55 + rng.uniform(-0.05, 0.05), cubic=True).repeat(2)
    numbers = atoms.numbers.copy()
    numbers[rng.choice(32, 11, replace=False)] = 28
    atoms.numbers = numbers
    atoms.positions += rng.normal(scale=0.05, size=(32, 3))
    return atoms


WORKLOADS = {"triclinic": (distinct, 0.7, 0.0), "alloy": (alloy_ordering, 0.65, 0.05)}


def make_candidates(n: int, seed: int = 0, workload: str = "triclinic") -> tuple[list[Candidate], np.ndarray]:
    make, distinct_fraction, moved_fraction = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    n_distinct = max(1, int(distinct_fraction * n))
    n_moved = int(moved_fraction * n)
    candidates, truth, originals = [], [], []
    for i in range(n):
        if i < n_distinct or not originals:
            atoms = make(seed * 10_000_000 + i)
            originals.append(atoms)
            group = len(originals) - 1
        elif i < n_distinct + n_moved:  # one atom moved by 0.4 Å: a structure of its own
            atoms = originals[int(rng.integers(n_distinct))].copy()
            direction = rng.normal(size=3)
            atoms.positions[int(rng.integers(32))] += 0.4 * direction / np.linalg.norm(direction)
            originals.append(atoms)
            group = len(originals) - 1
        else:
            group = int(rng.integers(n_distinct))
            atoms = originals[group].copy()
            if rng.random() < 2 / 3:
                atoms.set_cell(UNIMODULAR[int(rng.integers(4))] @ atoms.cell.array, scale_atoms=False)
                atoms.translate(rng.uniform(-5, 5, 3))
                atoms.wrap()
                atoms = atoms[rng.permutation(32)]
            else:
                atoms.positions += rng.uniform(-0.005, 0.005, (32, 3))
        candidates.append(Candidate(f"c{i}", atoms))
        truth.append(group)
    order = rng.permutation(n)  # duplicates scattered through the input
    return [candidates[i] for i in order], np.asarray(truth)[order]


def groups_from_report(report, ids: list[str]) -> np.ndarray:
    parent = {s["id"]: s["duplicate_of"] for s in report.skipped}

    def root(x):
        while x in parent:
            x = parent[x]
        return x
    return np.array([hash(root(i)) for i in ids])


def wrongly_skipped(report, ids: list[str], truth: np.ndarray) -> int:
    group = dict(zip(ids, truth.tolist()))
    return sum(group[s["id"]] != group[s["duplicate_of"]] for s in report.skipped)


def run_with_store(rows: int, n: int, processes: int, workload: str = "triclinic") -> dict:
    """Two outbox calls of `n` candidates against a store of `rows` rows of the same workload."""
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.store import NewStructure, Status, StructureStore
    pool, truth = make_candidates(rows + 2 * n, workload=workload)
    group = {c.id: g for c, g in zip(pool, truth.tolist())}
    results = {"workload": workload, "store_rows": rows, "calls": []}
    with tempfile.TemporaryDirectory() as work:
        store = StructureStore(f"{work}/structures.db")
        outcomes = store.add([NewStructure(LabelledFrame(c.atoms, None, None), "bench", status=Status.PENDING)
                              for c in pool[:rows]])
        for c, outcome in zip(pool[:rows], outcomes):
            group[f"store:{outcome.id}"] = group[c.id]
        for call in range(2):
            batch = pool[rows + call * n:rows + (call + 1) * n]
            start = time.perf_counter()
            report = process_outbox(batch, store, None, f"{work}/out{call}", tolerance=0.05, processes=processes)
            seconds = time.perf_counter() - start
            for record in report.submitted:
                group[f"store:{record['store_id']}"] = group[record["id"]]
            row = {"call": call + 1, "n": n, "seconds": round(seconds, 2), **report.counts,
                   "wrongly_skipped": sum(group[s["id"]] != group[s["duplicate_of"]] for s in report.skipped)}
            results["calls"].append(row)
            print(json.dumps(row), flush=True)
    return results


def run(sizes, processes, pymatgen_n, workload: str = "triclinic") -> dict:
    from sklearn.metrics import adjusted_rand_score
    results = {"workload": workload, "sizes": [], "pymatgen": None}
    for n in sizes:
        candidates, truth = make_candidates(n, workload=workload)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = process_outbox(candidates, None, None, out, tolerance=0.05, processes=processes)
            seconds = time.perf_counter() - start
        ari = adjusted_rand_score(truth, groups_from_report(report, [c.id for c in candidates]))
        row = {"workload": workload, "n": n, "seconds": round(seconds, 2), **report.counts,
               "true_groups": int(len(set(truth))), "ari_vs_truth": round(ari, 4),
               "wrongly_skipped": wrongly_skipped(report, [c.id for c in candidates], truth)}
        results["sizes"].append(row)
        print(json.dumps(row), flush=True)
    if len(sizes) > 1:
        ns = np.array([r["n"] for r in results["sizes"]], float)
        ts = np.array([r["seconds"] for r in results["sizes"]], float)
        results["exponent"] = round(float(np.polyfit(np.log(ns), np.log(ts), 1)[0]), 3)
        print(f"time ~ N^{results['exponent']}", flush=True)
    if pymatgen_n:
        from pymatgen.analysis.structure_matcher import StructureMatcher
        from pymatgen.io.ase import AseAtomsAdaptor
        candidates, truth = make_candidates(pymatgen_n, seed=1, workload=workload)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = process_outbox(candidates, None, None, out, tolerance=0.05)
            ours_s = time.perf_counter() - start
        ours = groups_from_report(report, [c.id for c in candidates])
        structures = [AseAtomsAdaptor.get_structure(c.atoms) for c in candidates]
        for index, s in enumerate(structures):
            s.properties["index"] = index
        start = time.perf_counter()
        grouped = StructureMatcher().group_structures(structures)
        pmg_s = time.perf_counter() - start
        labels = np.empty(pymatgen_n, int)
        for g, members in enumerate(grouped):
            for s in members:
                labels[s.properties["index"]] = g
        results["pymatgen"] = {
            "n": pymatgen_n, "true_groups": int(len(set(truth))),
            "outbox_seconds": round(ours_s, 2), "outbox_groups": int(len(set(ours))),
            "outbox_ari_vs_truth": round(adjusted_rand_score(truth, ours), 4),
            "pymatgen_seconds": round(pmg_s, 2), "pymatgen_groups": len(grouped),
            "pymatgen_ari_vs_truth": round(adjusted_rand_score(truth, labels), 4),
            "ari_outbox_vs_pymatgen": round(adjusted_rand_score(labels, ours), 4)}
        print(json.dumps(results["pymatgen"]), flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="triclinic")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pymatgen", type=int, default=1000, help="subset size for StructureMatcher (0: skip)")
    parser.add_argument("--store", type=int, default=0, help="rows of a store to run against (0: no store)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.store:
        results = run_with_store(args.store, args.sizes[0], args.processes, args.workload)
    else:
        results = run(args.sizes, args.processes, args.pymatgen, args.workload)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
