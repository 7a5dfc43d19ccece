import numpy as np
import pytest

from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.ingest import ingest_file


def _frames(shared_data, count=3):
    """The first `count` frames of Cu-I as text, ready to corrupt."""
    lines = (shared_data / "Cu-I.extxyz").read_text().splitlines(keepends=True)
    frames, position = [], 0
    while len(frames) < count:
        n_atoms = int(lines[position])
        frames.append("".join(lines[position:position + n_atoms + 2]))
        position += n_atoms + 2
    return frames


def _corrupt_middle(frames, old, new):
    return frames[0] + frames[1].replace(old, new) + frames[2]


BAD_MIDDLE_FRAMES = {
    "nan forces": (lambda f: f[0] + f[1].rstrip().rsplit(" ", 1)[0] + " nan\n" + f[2], "forces", "not finite"),
    "missing energy": (lambda f: _corrupt_middle(f, "energy=", "e_label="), "energy", "missing"),
    "unknown element": (lambda f: _corrupt_middle(f, "\nCu ", "\nXz "), "file", "Xz"),
}


@pytest.mark.parametrize("case", sorted(BAD_MIDDLE_FRAMES))
def test_a_bad_frame_is_rejected_by_name_and_its_neighbours_still_go_in(case, tmp_path, shared_data, store_url):
    corrupt, field, words = BAD_MIDDLE_FRAMES[case]
    path = tmp_path / "bad.extxyz"
    path.write_text(corrupt(_frames(shared_data)))
    store = StructureStore(store_url)
    report = ingest_file(store, path)
    [problem] = report.problems
    assert (problem.file, problem.frame, problem.field) == (str(path), 1, field)
    assert words in problem.message and f"bad.extxyz: frame 1: {field}:" in str(problem)
    assert report.accepted == 2 and report.rejected == 1
    assert [row.provenance["origin"] for row in store.harvest()] == ["bad.extxyz:0", "bad.extxyz:2"]


def test_wrong_force_shape(tmp_path, shared_data, store_url):
    frames = _frames(shared_data)
    frames[1] = frames[1].replace("forces:R:3", "forces:R:2").rsplit(" ", 1)[0] + "\n"
    assert frames[1].count("\n") == 3  # a one-atom frame, now with two force components
    path = tmp_path / "shape.extxyz"
    path.write_text("".join(frames))
    report = ingest_file(StructureStore(store_url), path)
    [problem] = report.problems
    assert problem.frame == 1 and problem.field == "forces" and "(1, 3)" in problem.message


def test_overlapping_atoms(tmp_path, store_url):
    path = tmp_path / "overlap.extxyz"
    path.write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc="T T T"\n'
                    "Cu 0 0 0 0 0 0\nCu 0.1 0 0 0 0 0\n")
    report = ingest_file(StructureStore(store_url), path)
    assert report.problems[0].field == "positions" and "0.100 Å apart" in report.problems[0].message
    assert report.accepted == 0


def test_truncated_file_keeps_the_complete_frames(tmp_path, shared_data, store_url):
    text = (shared_data / "Cu-I.extxyz").read_text()
    path = tmp_path / "truncated.extxyz"
    path.write_text(text[: len(text) // 2])
    store = StructureStore(store_url)
    report = ingest_file(store, path)
    [problem] = report.problems
    assert problem.field == "file" and "truncated" in problem.message
    assert report.accepted == problem.frame == len(store.harvest()) > 10


@pytest.mark.parametrize("name, content, words", [
    ("empty.extxyz", "", "empty"),
    ("notes.extxyz", "hello world\nthis is not a structure\n", "expected an atom count"),
    ("notes.txt", "hello world\n", "cannot read"),
    ("blob.pckl.gzip", "not a pickle", "not a Pacemaker pickled DataFrame"),
])
def test_files_that_hold_no_structures(tmp_path, store_url, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    store = StructureStore(store_url)
    report = ingest_file(store, path)
    [problem] = report.problems
    assert problem.file == str(path) and words in problem.message
    assert store.status_counts()["completed"] == 0


def test_reingesting_adds_nothing(shared_data, store_url):
    store = StructureStore(store_url)
    first = ingest_file(store, shared_data / "Cu-I.extxyz")
    twin = ingest_file(store, shared_data / "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip")
    again = ingest_file(store, shared_data / "Cu-I.extxyz")
    assert first.accepted == 105 and twin.duplicates == again.duplicates == 105
    assert twin.accepted == again.accepted == 0
    energies = np.array([row.frame.energy for row in store.harvest()])
    assert np.isfinite(energies).all() and len(energies) == 105
