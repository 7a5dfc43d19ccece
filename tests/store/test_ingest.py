import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from mlip_autopipec.data.export import export_dataset
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from mlip_autopipec.store.harvest import harvest_for_export
from mlip_autopipec.store.ingest import ingest_file, ingest_for_export


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


# -- ingest_for_export: the rows just written, exported without reading them back ----------------

ALLOY_ELEMENTS = ["Cu", "Ni", "Pd", "Ag", "Pt"]
SOURCE = {"store": "structures.db", "campaign": "default"}


def _alloy_frame(rng, labels_only_of=None):
    """A 32-atom random five-element fcc alloy (or `labels_only_of`'s geometry) with arbitrary labels."""
    if labels_only_of is None:
        atoms = bulk("Cu", "fcc", a=3.9, cubic=True) * (2, 2, 2)
        atoms.symbols = rng.choice(ALLOY_ELEMENTS, size=len(atoms))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    else:
        atoms = labels_only_of.copy()
    energy = float(rng.normal(-100.0, 5.0))
    return atoms, energy, energy + float(rng.normal(3.0, 1.0)), rng.normal(scale=0.5, size=(len(atoms), 3))


@pytest.fixture(scope="module")
def data_files(shared_data, tmp_path_factory):
    """The shared Cu-I, Cu-II and ethanol files, and two alloy files made here: an extxyz (Voigt stress,
    energy_corrected != energy, a duplicate frame, a frame with NaN forces, one with overlapping atoms)
    and a Pacemaker DataFrame (3x3 stress, 3 frames with the geometry of alloy frames, 4 new)."""
    directory = tmp_path_factory.mktemp("ingest-for-export")
    rng = np.random.default_rng(20)
    images = []
    for _ in range(10):
        atoms, energy, corrected, forces = _alloy_frame(rng)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=rng.normal(size=6))
        atoms.info["energy_corrected"] = corrected
        images.append(atoms)
    twin, energy, corrected, forces = _alloy_frame(rng, labels_only_of=images[1])
    twin.calc = SinglePointCalculator(twin, energy=energy, forces=forces, stress=rng.normal(size=6))
    nan_forces, overlapping = images[3].copy(), images[5].copy()
    forces = images[3].get_forces().copy()
    forces[7, 1] = np.nan
    nan_forces.calc = SinglePointCalculator(nan_forces, energy=-90.0, forces=forces)
    overlapping.positions[1] = overlapping.positions[0] + [0.1, 0.0, 0.0]
    overlapping.calc = SinglePointCalculator(overlapping, energy=-90.0, forces=images[5].get_forces())
    ase.io.write(directory / "alloy.extxyz", images + [twin, nan_forces, overlapping], format="extxyz")

    table = []
    for geometry in [images[0], images[2], images[4], None, None, None, None]:
        atoms, energy, corrected, forces = _alloy_frame(rng, labels_only_of=geometry)
        atoms.calc = SinglePointCalculator(atoms, stress=rng.normal(size=(3, 3)))
        table.append({"ase_atoms": atoms, "energy": energy, "energy_corrected": corrected, "forces": forces})
    pd.DataFrame(table).to_pickle(directory / "alloy-3x3.pckl.gzip", compression="gzip")
    return {"Cu-I": shared_data / "Cu-I.extxyz", "Cu-II": shared_data / "Cu-II.extxyz",
            "ethanol": shared_data / "ethanol-revMD17.extxyz",
            "alloy": directory / "alloy.extxyz", "alloy-3x3": directory / "alloy-3x3.pckl.gzip"}


def _files(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def _read_back_export(paths, store, out_dir):
    """The reference: each file through ingest_file, then the rows harvested from the store."""
    reports = [ingest_file(store, path) for path in paths]
    return reports, export_dataset(harvest_for_export(store), out_dir, seed=5, source=SOURCE)


SCENARIOS = {
    "Cu-I, Cu-II": ["Cu-I", "Cu-II"],
    "Cu-II, Cu-I": ["Cu-II", "Cu-I"],
    "ethanol": ["ethanol"],
    "alloy, alloy-3x3": ["alloy", "alloy-3x3"],
    "alloy-3x3, alloy": ["alloy-3x3", "alloy"],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_exporting_the_rows_just_written_writes_what_reading_them_back_writes(scenario, data_files, store_url,
                                                                             tmp_path):
    paths = [data_files[name] for name in SCENARIOS[scenario]]
    ingested = ingest_for_export(StructureStore(store_url), paths)
    assert not ingested.harvested
    direct = export_dataset(ingested.items, tmp_path / "direct", seed=5, source=SOURCE)
    reports, read_back = _read_back_export(paths, StructureStore(tmp_path / "read-back.db"), tmp_path / "read-back")
    assert ingested.report.files == reports  # the same counts and the same validation errors
    assert direct.digest == read_back.digest
    assert _files(tmp_path / "direct") == _files(tmp_path / "read-back")
    exported = pd.read_pickle(direct.path_of("pacemaker", "train"), compression="gzip")
    if "alloy" in scenario:  # what the alloy files hold did reach the comparison
        assert (ingested.report.accepted, ingested.report.duplicates, ingested.report.rejected) == (14, 4, 2)
        assert {problem.field for problem in ingested.report.problems} == {"forces", "positions"}
        assert "REF_stress" in direct.path_of("mace", "train").read_text()
        assert set(direct.elements) == set(ALLOY_ELEMENTS)
    if scenario in ("ethanol", "alloy, alloy-3x3"):
        assert (exported.energy_corrected != exported.energy).all()
        assert any(atoms.pbc.any() for atoms in exported.ase_atoms) == (scenario != "ethanol")  # ethanol: none


def _earlier_rows(kind, url, data_files):
    if kind == "completed rows of the campaign":  # e.g. an earlier attempt's first file
        ingest_file(StructureStore(url), data_files["alloy"])
    elif kind == "another campaign's rows, some the same structures":
        ingest_file(StructureStore(url, campaign="other"), data_files["alloy-3x3"])
    else:
        rng = np.random.default_rng(3)
        StructureStore(url).add([NewStructure(LabelledFrame(_alloy_frame(rng)[0], None, None), source="md",
                                              status=Status.PENDING) for _ in range(3)])


@pytest.mark.parametrize("kind, harvested", [
    ("completed rows of the campaign", True),
    ("another campaign's rows, some the same structures", False),
    ("pending rows of the campaign", False),
])
def test_a_store_holding_other_rows_gives_the_same_export(kind, harvested, data_files, store_url, tmp_path):
    """Only when the campaign's completed rows are exactly the rows just added are they exported as
    written; otherwise they are read back. Either way the export is that of the rows read back."""
    paths = [data_files["alloy"], data_files["alloy-3x3"]]
    _earlier_rows(kind, store_url, data_files)
    ingested = ingest_for_export(StructureStore(store_url), paths)
    assert ingested.harvested is harvested
    export_dataset(ingested.items, tmp_path / "direct", seed=5, source=SOURCE)
    reference = tmp_path / "read-back.db"
    _earlier_rows(kind, str(reference), data_files)
    reports, read_back = _read_back_export(paths, StructureStore(reference), tmp_path / "read-back")
    assert ingested.report.files == reports
    assert _files(tmp_path / "direct") == _files(tmp_path / "read-back")
