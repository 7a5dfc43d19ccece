import numpy as np
from ase.build import bulk, molecule

from mlip_autopipec.store.fingerprint import fingerprint


def test_atom_order_and_periodic_wrapping_do_not_matter():
    cell = bulk("Cu", cubic=True) * (2, 2, 2)
    cell.rattle(0.05, seed=1)
    permuted = cell[np.random.default_rng(0).permutation(len(cell))]
    shifted = cell.copy()
    shifted.positions += cell.cell[0] + cell.cell[2]  # a whole lattice vector: same crystal
    assert fingerprint(cell) == fingerprint(permuted) == fingerprint(shifted)


def test_molecules_are_translation_invariant():
    ethanol = molecule("CH3CH2OH")
    moved = ethanol.copy()
    moved.translate([3.0, -1.0, 7.5])
    assert fingerprint(ethanol) == fingerprint(moved)


def test_a_real_displacement_changes_the_fingerprint():
    cell = bulk("Cu", cubic=True)
    displaced = cell.copy()
    displaced.positions[0, 0] += 0.01
    strained = cell.copy()
    strained.set_cell(cell.cell * 1.01, scale_atoms=True)
    assert len({fingerprint(cell), fingerprint(displaced), fingerprint(strained)}) == 3
