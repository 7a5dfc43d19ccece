import numpy as np
from ase.build import bulk, molecule

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.validation import frame_problems


def _labelled(atoms, energy=-1.0, forces=None):
    return LabelledFrame(atoms, energy, np.zeros((len(atoms), 3)) if forces is None else forces)


def test_a_sane_frame_passes():
    assert frame_problems(_labelled(bulk("Cu", cubic=True))) == []
    assert frame_problems(_labelled(molecule("CH3CH2OH"))) == []


def test_each_problem_names_its_field():
    cu = bulk("Cu", cubic=True)
    assert frame_problems(_labelled(cu, energy=float("nan")))[0][0] == "energy"
    assert frame_problems(_labelled(cu, energy=None))[0] == ("energy", "missing")
    assert frame_problems(_labelled(cu, forces=np.zeros((3, 3))))[0][0] == "forces"
    close = cu.copy()
    close.positions[1] = close.positions[0] + [0.2, 0, 0]
    field, message = frame_problems(_labelled(close))[0]
    assert field == "positions" and "0.200 Å" in message
    flat = cu.copy()
    flat.cell[2] = [0, 0, 0]
    assert frame_problems(_labelled(flat))[0][0] == "cell"


def test_min_distance_is_configurable():
    atoms = molecule("H2")
    assert frame_problems(_labelled(atoms), min_distance=0.5) == []
    assert frame_problems(_labelled(atoms), min_distance=1.0)[0][0] == "positions"


def test_allowed_elements_restrict_the_chemistry():
    field, message = frame_problems(_labelled(molecule("H2O")), allowed_elements={"H"})[0]
    assert field == "numbers" and "'O'" in message
