import multiprocessing
import pickle

import ase.db
import numpy as np
import pytest
from ase.build import bulk

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StatusError, StoreError, StructureStore, fingerprint


def _cell(shift: float) -> LabelledFrame:
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.positions[0, 0] += shift
    return LabelledFrame(atoms, energy=-shift, forces=np.full((len(atoms), 3), shift))


def test_labelled_frames_round_trip_with_provenance(store_url):
    store = StructureStore(store_url, campaign="cu")
    frame = _cell(0.1)
    frame.stress = np.arange(6.0)
    [outcome] = store.add([NewStructure(frame, source="md", generation=2, parent=None, origin="run:3")])
    stored = store.get(outcome.id)
    assert stored.status is Status.COMPLETED and stored.source == "md" and stored.generation == 2
    assert stored.frame.energy == frame.energy
    np.testing.assert_array_equal(stored.frame.forces, frame.forces)
    np.testing.assert_array_equal(stored.frame.stress, frame.stress)
    assert stored.provenance["origin"] == "run:3" and stored.provenance["status_time"] > 0


def test_a_3x3_stress_comes_back_3x3(store_url):
    """SQLite returned it flat (9 values), which the extxyz writer wrote in another order than a 3x3."""
    store = StructureStore(store_url)
    frame = _cell(0.15)
    frame.stress = np.arange(9.0).reshape(3, 3)  # not symmetric: a transposition would show
    [outcome] = store.add([NewStructure(frame, source="ingest")])
    np.testing.assert_array_equal(store.get(outcome.id).frame.stress, frame.stress)


def test_add_can_return_the_rows_as_get_reads_them_back(store_url):
    """Exporting the rows `add` returns writes the bytes an export of the rows read back writes:
    same types (Python floats), shapes and array memory order (a pickle shows it)."""
    frames = [_cell(0.1), _cell(0.2), _cell(0.3)]
    frames[0].stress = np.arange(6.0)
    frames[1].stress = np.arange(9.0).reshape(3, 3)
    frames[1].energy, frames[1].energy_corrected = np.float64(-2.5), np.float64(-0.25)
    frames[2].forces = np.asfortranarray(np.arange(3.0 * len(frames[2].atoms)).reshape(-1, 3))
    store = StructureStore(store_url, campaign="cu")
    outcomes = store.add([NewStructure(frame, source="md", generation=1, origin=f"run:{i}")
                          for i, frame in enumerate(frames)] + [NewStructure(_cell(0.1), source="md")],
                         keep_rows=True)
    assert [o.stored is None for o in outcomes] == [False, False, False, True]  # the last is a duplicate
    for outcome in outcomes[:3]:
        written, read = outcome.stored, store.get(outcome.id)
        assert pickle.dumps(written.frame.atoms) == pickle.dumps(read.frame.atoms)
        for name in ("energy", "forces", "stress", "energy_corrected"):
            assert pickle.dumps(getattr(written.frame, name)) == pickle.dumps(getattr(read.frame, name)), name
        written.frame = read.frame = None
        assert written == read


def test_the_same_structure_is_never_stored_twice(store_url):
    store = StructureStore(store_url)
    first = store.add([NewStructure(_cell(0.1), "ingest"), NewStructure(_cell(0.2), "ingest")])
    again = store.add([NewStructure(_cell(0.1), "md")])
    assert all(o.added for o in first)
    assert again[0].duplicate_of == first[0].id
    assert store.status_counts()["completed"] == 2


def test_label_lifecycle(store_url):
    store = StructureStore(store_url)
    pending = [NewStructure(LabelledFrame(_cell(s).atoms, None, None), "md", status=Status.PENDING)
               for s in (0.1, 0.2, 0.3)]
    ids = [o.id for o in store.add(pending)]
    claimed = store.claim(2)
    assert [c.id for c in claimed] == ids[:2] and all(c.status is Status.RUNNING for c in claimed)
    store.complete(ids[0], _cell(0.1), labeler="EMT", labeler_digest="abc")
    store.fail(ids[1], "SCF did not converge")
    assert store.get(ids[0]).frame.energy == pytest.approx(-0.1)
    assert store.get(ids[1]).provenance["error"] == "SCF did not converge"
    with pytest.raises(StatusError, match="completed to running|completed to completed"):
        store.complete(ids[0], _cell(0.1), labeler="EMT", labeler_digest="abc")
    assert store.requeue(max_attempts=2) == [ids[1]]
    reclaimed = store.claim(5)
    assert [c.id for c in reclaimed] == ids[1:] and reclaimed[0].provenance["attempts"] == 2
    store.fail(ids[1], "again")
    assert store.requeue(max_attempts=2) == []  # out of attempts: stays failed
    assert store.status_counts() == {"pending": 0, "running": 1, "completed": 1, "failed": 1}
    assert store.requeue(max_attempts=2, include_running=True) == [ids[2]]  # after a crash


def test_harvest_filters_by_generation_source_and_campaign(store_url):
    StructureStore(store_url, campaign="other").add([NewStructure(_cell(0.5), "ingest")])
    store = StructureStore(store_url, campaign="cu")
    store.add([NewStructure(_cell(0.1), "ingest", generation=0),
               NewStructure(_cell(0.2), "md", generation=1),
               NewStructure(_cell(0.3), "md", generation=2)])
    assert len(store.harvest()) == 3
    assert [r.generation for r in store.harvest(source="md")] == [1, 2]
    assert [r.generation for r in store.harvest(max_generation=1)] == [0, 1]


def test_the_full_fingerprint_is_computed_once_for_rows_without_it_and_read_after(store_url):
    StructureStore(store_url, campaign="other").add([NewStructure(_cell(0.5), "ingest")])
    store = StructureStore(store_url, campaign="cu")
    # as ingest (and every version before it was recorded) writes a row: without it; and a writer that has it
    store.add([NewStructure(_cell(0.1), "ingest", origin="a.xyz:0"),
               NewStructure(_cell(0.2), "outbox", status=Status.PENDING, canonical_fingerprint="recorded")])
    before = {row.id: row for row in store.select()}
    assert [row.canonical_fingerprint for row in before.values()] == [None, "recorded"]
    rows = store.select_fingerprinted()
    assert [row.canonical_fingerprint for row in rows] == [fingerprint(_cell(0.1).atoms), "recorded"]
    for row in rows:  # recorded, and nothing else of the row changed
        again = store.get(row.id)
        assert again.canonical_fingerprint == row.canonical_fingerprint
        assert (again.fingerprint, again.status, again.source, again.provenance) == (
            before[row.id].fingerprint, before[row.id].status, before[row.id].source, before[row.id].provenance)
        np.testing.assert_array_equal(again.frame.atoms.positions, before[row.id].frame.atoms.positions)
    assert store.get(1).canonical_fingerprint is None  # another campaign's row: not this outbox's business
    # written as ase.db's own update writes a key: a selection by it finds the row
    found = ase.db.connect(store.url).select(canonical_fingerprint=rows[0].canonical_fingerprint)
    assert [row.id for row in found] == [rows[0].id]
    assert store.add([NewStructure(_cell(0.1), "md")])[0].duplicate_of == rows[0].id


def _write_shifts(path: str, shifts: list[float]) -> None:
    store = StructureStore(path)
    for shift in shifts:  # one transaction per structure: maximal interleaving
        store.add([NewStructure(_cell(shift), "md")])


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(store_url):
    shifts = [round(0.01 * i, 3) for i in range(40)]
    # Four processes, overlapping halves: every structure is offered twice.
    chunks = [shifts[:20], shifts[10:30], shifts[20:], shifts[:10] + shifts[30:]]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_shifts, args=(str(store_url), chunk)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    rows = StructureStore(store_url).harvest()
    assert len(rows) == len(shifts)
    assert sorted(row.frame.energy for row in rows) == sorted(-s for s in shifts)


def _open_new_stores(paths: list[str], barrier) -> None:
    try:
        for path in paths:
            barrier.wait(timeout=60)  # every process opens the same new file at the same moment
            StructureStore(path).add([NewStructure(_cell(0.1), "md")])
    except BaseException:
        barrier.abort()  # the others stop waiting for this process
        raise


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    paths = [str(tmp_path / f"new-{attempt}.db") for attempt in range(8)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    workers = [context.Process(target=_open_new_stores, args=(paths, barrier)) for _ in range(6)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    for path in paths:
        assert StructureStore(path).status_counts()["completed"] == 1


def test_a_file_that_is_not_a_database_is_refused_by_name_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=f"{path}: not a structure store .*file is not a database"):
        StructureStore(path)
    assert path.read_text() == "not a database\n" * 100
