"""process_outbox: dedup within a batch, against the submitted queue and the store; idempotence."""

import json

import ase.io
import numpy as np

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.outbox import (SKIP_FILE, SUBMIT_FILE, Candidate, process_outbox, read_candidates,
                                   read_submitted)
from mlip_autopipec.store import StructureStore, fingerprint
from mlip_autopipec.store.structure_store import NewStructure, Status
from tests.outbox.test_canonical import UNIMODULAR, random_structure


def variants(atoms, seed):
    """Exact duplicates: translated+wrapped, permuted, equivalent cell; and a near one (tiny rattle)."""
    rng = np.random.default_rng(seed)
    moved = atoms.copy()
    moved.translate(rng.uniform(-10, 10, 3))
    moved.wrap()
    permuted = atoms[rng.permutation(len(atoms))]
    recelled = atoms.copy()
    recelled.set_cell(UNIMODULAR[seed % len(UNIMODULAR)] @ atoms.cell.array, scale_atoms=False)
    recelled.wrap()
    nearby = atoms.copy()
    nearby.positions += rng.uniform(-0.005, 0.005, nearby.positions.shape)
    return [moved, permuted, recelled], nearby


def write_queue(path, structures, prefix="c"):
    with open(path, "w") as handle:
        for index, atoms in enumerate(structures):
            handle.write(json.dumps({"id": f"{prefix}{index}", "numbers": atoms.numbers.tolist(),
                                     "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(),
                                     "pbc": atoms.pbc.tolist()}) + "\n")


def test_batch_dedup_reasons_and_ids(tmp_path):
    base = [random_structure(seed) for seed in range(5)]
    structures = list(base)
    for seed, atoms in enumerate(base[:3]):
        exact, nearby = variants(atoms, seed)
        structures += exact + [nearby]
    write_queue(tmp_path / "dft_queue.jsonl", structures)
    candidates = read_candidates([tmp_path / "dft_queue.jsonl"])
    report = process_outbox(candidates, None, None, tmp_path / "out", tolerance=0.05)
    assert [r["id"] for r in report.submitted] == [f"c{i}" for i in range(5)]
    assert report.counts == {"candidates": 17, "submitted": 5, "skipped_exact": 9, "skipped_near": 3}
    skips = [json.loads(line) for line in (tmp_path / "out" / SKIP_FILE).read_text().splitlines()]
    for skip in skips:
        index = int(skip["id"][1:])
        assert skip["duplicate_of"] == f"c{(index - 5) // 4}"
        assert skip["reason"] == ("near" if (index - 5) % 4 == 3 else "exact")


def test_idempotent_and_queue_appends(tmp_path):
    out = tmp_path / "out"
    first = [random_structure(seed) for seed in range(4)]
    write_queue(tmp_path / "q1.jsonl", first, "a")
    report = process_outbox(read_candidates([tmp_path / "q1.jsonl"]), None, None, out)
    assert len(report.submitted) == 4
    submit_text = (out / SUBMIT_FILE).read_text()

    again = process_outbox(read_candidates([tmp_path / "q1.jsonl"]), None, None, out)
    assert again.submitted == [] and len(again.skipped) == 4
    assert {s["duplicate_of"] for s in again.skipped} == {f"submitted:a{i}" for i in range(4)}
    assert (out / SUBMIT_FILE).read_text() == submit_text

    # a later run with old structures in another description plus new ones appends only the new
    second = [variants(first[1], 1)[0][2], random_structure(100), random_structure(101)]
    write_queue(tmp_path / "q2.jsonl", second, "b")
    report = process_outbox(read_candidates([tmp_path / "q2.jsonl"]), None, None, out)
    assert [r["id"] for r in report.submitted] == ["b1", "b2"]
    queue = read_submitted(out / SUBMIT_FILE)
    assert [r["id"] for r in queue] == ["a0", "a1", "a2", "a3", "b1", "b2"]
    assert (out / SUBMIT_FILE).read_text().startswith(submit_text)
    assert not list(out.glob(".*.tmp"))


def test_store_integration(tmp_path):
    store = StructureStore(tmp_path / "structures.db", campaign="c1")
    labelled = random_structure(7)
    store.add([NewStructure(LabelledFrame(labelled, -1.0, np.zeros((len(labelled), 3))), "dft")])
    exact, nearby = variants(labelled, 2)
    candidates = [Candidate("x0", exact[2]), Candidate("x1", nearby), Candidate("x2", random_structure(8)),
                  Candidate("x3", random_structure(9))]
    report = process_outbox(candidates, store, None, tmp_path / "out", generation=3)
    assert [s["reason"] for s in report.skipped] == ["exact", "near"]
    assert {s["duplicate_of"] for s in report.skipped} == {"store:1"}
    assert [r["id"] for r in report.submitted] == ["x2", "x3"]
    pending = list(store.select(status=Status.PENDING))
    assert [row.id for row in pending] == [r["store_id"] for r in report.submitted]
    assert all(row.generation == 3 and row.source == "outbox" for row in pending)
    assert store.status_counts() == {"pending": 2, "running": 0, "completed": 1, "failed": 0}
    # the store now holds every row's fingerprint: the ingested row's recorded by this run, the
    # submitted ones written with them; later runs read them
    recorded = {row.id: row.canonical_fingerprint for row in store.select()}
    assert recorded == {1: fingerprint(labelled), **{r["store_id"]: r["fingerprint"] for r in report.submitted}}

    again = process_outbox(candidates, store, None, tmp_path / "out", generation=3)
    assert again.submitted == []
    assert store.status_counts()["pending"] == 2


def test_store_rows_at_another_fingerprint_tolerance(tmp_path):
    """The store records fingerprints at the default tolerance; with another one they are computed."""
    store = StructureStore(tmp_path / "structures.db")
    labelled = random_structure(7)
    store.add([NewStructure(LabelledFrame(labelled, -1.0, np.zeros((len(labelled), 3))), "dft")])
    exact, nearby = variants(labelled, 2)
    report = process_outbox([Candidate("x0", exact[2]), Candidate("x1", nearby)], store, None, tmp_path / "out",
                            fingerprint_tolerance=1e-4)
    assert [(s["reason"], s["duplicate_of"]) for s in report.skipped] == [("exact", "store:1"), ("near", "store:1")]
    assert store.get(1).canonical_fingerprint is None


def test_ase_readable_input(tmp_path):
    structures = [random_structure(seed) for seed in range(3)]
    ase.io.write(tmp_path / "cands.extxyz", structures + [structures[0][::-1]])
    candidates = read_candidates([tmp_path / "cands.extxyz"])
    assert [c.id for c in candidates] == [f"cands.extxyz:{i}" for i in range(4)]
    report = process_outbox(candidates, None, None, tmp_path / "out")
    assert len(report.submitted) == 3
    assert report.skipped[0]["duplicate_of"] == "cands.extxyz:0"


def test_displacement_above_tolerance_is_submitted(tmp_path):
    atoms = random_structure(11)
    rng = np.random.default_rng(0)
    moved = []
    for index in range(5):
        other = atoms.copy()
        direction = rng.normal(size=3)
        other.positions[index] += 0.3 * direction / np.linalg.norm(direction)
        moved.append(other)
    candidates = [Candidate(f"m{i}", a) for i, a in enumerate([atoms] + moved)]
    report = process_outbox(candidates, None, None, tmp_path / "out", tolerance=0.05)
    assert len(report.submitted) == 6


def test_concurrent_runs_do_not_lose_or_duplicate_submissions(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    out = tmp_path / "out"
    batches = [[Candidate(f"t{k}-{i}", random_structure(1000 + i)) for i in range(k, k + 6)] for k in (0, 3)]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda batch: process_outbox(batch, None, None, out), batches))
    queue = read_submitted(out / SUBMIT_FILE)
    assert len(queue) == sum(len(r.submitted) for r in reports) == 9  # structures 1000..1008 once each
