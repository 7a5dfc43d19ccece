"""Small EMT-friendly structures (Cu, Ni, CuNi; periodic and not) waiting in a store for labels."""

import pytest
from ase import Atoms
from ase.build import bulk

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.conftest import PROJECT_ROOT


def fcc_cell(element: str = "Cu", seed: int = 0, periodic: bool = True) -> Atoms:
    """A rattled 8-atom fcc cell of Cu or Ni; "CuNi" gives an ordered alloy."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols = ["Cu", "Ni"] * 4 if element == "CuNi" else [element] * len(atoms)
    atoms.rattle(0.05, seed=seed)
    atoms.pbc = periodic
    return atoms


@pytest.fixture
def pending(store_path):
    """pending(*atoms, generation=0) -> (store, ids): adds the structures as pending rows."""
    store = StructureStore(store_path, campaign="test")

    def add(*structures: Atoms, generation: int = 0) -> tuple[StructureStore, list[int]]:
        outcomes = store.add([NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING,
                                           generation=generation) for atoms in structures])
        assert all(outcome.added for outcome in outcomes)
        return store, [outcome.id for outcome in outcomes]

    return add


@pytest.fixture(autouse=True)
def run_from_project_root(monkeypatch):
    """Workers import 'tests.labeling.faulty_calculators' from the caller's working directory."""
    monkeypatch.chdir(PROJECT_ROOT)
