import json
import pickle

import ase.io
import numpy as np
import pandas as pd
import pytest

from mlip_autopipec.data.export import ExportItem, export_dataset, split_by_group
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import sha256_file
from mlip_autopipec.store import NewStructure, StructureStore
from mlip_autopipec.store.harvest import harvest_for_export
from mlip_autopipec.store.ingest import ingest_file


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, shared_data):
    store = StructureStore(tmp_path_factory.mktemp("store") / "structures.db")
    for name in ("Cu-I.extxyz", "Cu_df1_A1_A2_A3_EV_elast_phon.pckl.gzip", "ethanol-revMD17.extxyz"):
        ingest_file(store, shared_data / name)
    return store


def test_round_trip_is_exact_in_every_format(real_store, tmp_path, shared_data):
    manifest = export_dataset(harvest_for_export(real_store), tmp_path, test_fraction=0.1, seed=3)
    stored = {row.fingerprint: row.frame for row in real_store.harvest()}
    originals = ase.io.read(shared_data / "Cu-I.extxyz", ":") + ase.io.read(shared_data / "ethanol-revMD17.extxyz", ":")
    by_energy = {}
    for atoms in originals:
        by_energy.setdefault(atoms.get_potential_energy(), atoms)

    exported = 0
    for split in ("train", "test"):
        xyz = ase.io.read(manifest.path_of("extxyz", split), ":")
        mace = ase.io.read(manifest.path_of("mace", split), ":")
        table = pd.read_pickle(manifest.path_of("pacemaker", split), compression="gzip")
        assert len(xyz) == len(mace) == len(table) == manifest.counts[split]
        for atoms, mace_atoms, row in zip(xyz, mace, table.itertuples()):
            original = by_energy[atoms.get_potential_energy()]
            np.testing.assert_array_equal(atoms.get_forces(), original.get_forces())
            np.testing.assert_array_equal(atoms.positions, original.positions)
            assert mace_atoms.info["REF_energy"] == original.get_potential_energy()
            np.testing.assert_array_equal(mace_atoms.arrays["REF_forces"], original.get_forces())
            assert row.energy == original.get_potential_energy()
            assert row.energy_corrected == original.info["energy_corrected"]
            np.testing.assert_array_equal(row.forces, original.get_forces())
            np.testing.assert_array_equal(row.ase_atoms.positions, original.positions)
            exported += 1
    assert exported == len(stored)
    assert manifest.elements == ["C", "Cu", "H", "O"]
    for entry in manifest.files:
        assert sha256_file(tmp_path / entry.path) == entry.sha256
    assert DatasetManifest.load(tmp_path).digest == manifest.digest
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 3


def test_export_is_reproducible_and_seeded(real_store, tmp_path):
    items = harvest_for_export(real_store)
    first = export_dataset(items, tmp_path / "a", seed=0)
    again = export_dataset(list(reversed(items)), tmp_path / "b", seed=0)
    other = export_dataset(items, tmp_path / "c", seed=1)
    assert [f.sha256 for f in first.files if f.split == "test"] != [f.sha256 for f in other.files if f.split == "test"]
    assert first.digest == export_dataset(items, tmp_path / "d", seed=0).digest
    assert first.counts == again.counts  # row order does not move frames across the split


def test_equal_frames_give_equal_bytes_whatever_object_holds_their_arrays(real_store, tmp_path):
    """Frames unpickled (from a user's DataFrame: numpy dtype objects of their own) or with Fortran-ordered
    forces (as a reader may give) export to the bytes of the same frames read from the store."""
    items = harvest_for_export(real_store)
    copies = pickle.loads(pickle.dumps(items))
    for item in copies:
        item.frame.forces = np.asfortranarray(item.frame.forces)
    assert copies[0].frame.atoms.positions.dtype is not np.dtype(float)
    assert export_dataset(copies, tmp_path / "copies").digest == export_dataset(items, tmp_path / "read").digest


def test_relatives_stay_on_one_side_of_the_split(store_path):
    from ase.build import bulk
    from mlip_autopipec.data.frames import LabelledFrame

    store = StructureStore(store_path)
    for run in range(8):  # eight MD runs of five snapshots each
        seed_atoms = bulk("Cu", cubic=True)
        seed_atoms.positions[0, 0] += 0.05 * (run + 1)
        [root] = store.add([NewStructure(LabelledFrame(seed_atoms, -1.0, np.zeros((4, 3))), "seed")])
        snapshots = []
        for step in range(5):
            atoms = seed_atoms.copy()
            atoms.positions[1, 1] += 0.01 * (step + 1)
            snapshots.append(NewStructure(LabelledFrame(atoms, -1.0, np.zeros((4, 3))), "md", parent=root.id))
        store.add(snapshots)
    items = harvest_for_export(store)
    rows = store.harvest()
    split = split_by_group(items, test_fraction=0.25, seed=0)
    side = {i: name for name, indices in split.items() for i in indices}
    family = {}
    for index, row in enumerate(rows):
        family.setdefault(row.split_group, set()).add(side[index])
    assert all(len(sides) == 1 for sides in family.values())
    assert 0 < len(split["test"]) < len(items)


def test_empty_dataset_and_unknown_format_are_clear_errors(tmp_path, real_store):
    with pytest.raises(ValueError, match="empty"):
        export_dataset([], tmp_path)
    items = [ExportItem(row.frame, str(row.id)) for row in real_store.harvest()[:5]]
    with pytest.raises(ValueError, match="unknown export format"):
        export_dataset(items, tmp_path, formats=["cif"])
    assert not (tmp_path / "manifest.json").exists()


def test_a_rare_element_is_never_only_in_the_test_split():
    """One Ni atom in one of twenty Cu cells: whatever the seed and test fraction, that cell trains."""
    from ase.build import bulk

    from mlip_autopipec.data.frames import LabelledFrame

    def cells(with_ni: bool) -> list[ExportItem]:
        items = []
        for index in range(20):
            atoms = bulk("Cu", cubic=True)
            atoms.positions[0, 0] += 0.01 * index
            if index == 7 and with_ni:
                atoms.symbols[1] = "Ni"
            items.append(ExportItem(LabelledFrame(atoms, -1.0, np.zeros((4, 3))), f"frame-{index}"))
        return items

    tested_without_ni = 0
    for seed in range(10):
        for fraction in (0.1, 0.5, 0.9):
            split = split_by_group(cells(with_ni=True), test_fraction=fraction, seed=seed)
            assert 7 in split["train"] and split["test"]
            assert sorted(split["train"] + split["test"]) == list(range(20))
            tested_without_ni += 7 in split_by_group(cells(with_ni=False), fraction, seed)["test"]
    assert tested_without_ni > 0  # the same cell, all Cu, does land in test: the rule is what keeps it


def test_extxyz_holds_exactly_what_ase_writes_for_the_labelled_atoms(tmp_path, shared_data):
    """The writer puts labels where ase's extxyz writer moves a calculator's results; the bytes
    (hence the dataset digest) are those of `ase.io.write` on `frame.to_atoms()`."""
    from mlip_autopipec.data.readers import read_labelled_frames

    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")][:6]
    frames[1].stress = np.arange(6, dtype=float)
    frames[2].stress = np.arange(9, dtype=float).reshape(3, 3)
    frames[3].energy_corrected = None
    manifest = export_dataset([ExportItem(frame, str(index)) for index, frame in enumerate(frames)], tmp_path / "out",
                              test_fraction=0.0, formats=["extxyz"])
    ase.io.write(tmp_path / "ase.extxyz", [frame.to_atoms() for frame in frames], format="extxyz")
    assert manifest.path_of("extxyz", "train").read_bytes() == (tmp_path / "ase.extxyz").read_bytes()
