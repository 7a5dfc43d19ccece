"""The store's rows are ase.db's own: what StructureStore.add writes equals what ase.db writes for
the same frame carried by a SinglePointCalculator (the format before the faster write path)."""

import ase.db
import numpy as np
from ase.build import bulk

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, StructureStore


def _frame(stress: bool) -> LabelledFrame:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    rng = np.random.default_rng(0)
    return LabelledFrame(atoms, -14.5, rng.normal(size=(4, 3)), rng.normal(size=6) if stress else None, -1.25)


def test_rows_equal_those_of_a_single_point_calculator(tmp_path):
    frames = [_frame(stress=False), _frame(stress=True)]
    frames[1].atoms.positions[0, 0] += 0.3
    store = StructureStore(tmp_path / "ours.db")
    ids = [outcome.id for outcome in store.add([NewStructure(frame=f, source="t") for f in frames])]
    reference = ase.db.connect(tmp_path / "reference.db")
    ours = ase.db.connect(tmp_path / "ours.db")
    for row_id, frame in zip(ids, frames):
        mine, theirs = ours.get(id=row_id), reference.get(id=reference.write(frame.to_atoms()))
        skip = {"id", "unique_id", "ctime", "mtime", "key_value_pairs", "user"}
        assert sorted(set(mine) - skip - set(mine.key_value_pairs)) == sorted(set(theirs) - skip), row_id
        for key in set(theirs) - skip:
            np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(theirs[key]), err_msg=key)
        kept = ase.db.connect(tmp_path / "keys.db")  # the keys as ase.db's own write stores them
        keys = kept.get(id=kept.write(frame.to_atoms(), key_value_pairs=mine.key_value_pairs)).key_value_pairs
        assert keys == mine.key_value_pairs and mine.user == theirs.user and mine.ctime >= theirs.ctime - 1
        back = store.get(row_id).frame
        assert back.energy == frame.energy and np.array_equal(back.forces, frame.forces)
    assert frames[0].atoms.calc is None  # the frame itself is not touched
