"""The fingerprint of a structure: what it ignores, what it tells apart, and values that must not move.

Both modes: the full fingerprint (the outbox's exact duplicates, the store's `canonical_fingerprint`)
and the store's duplicate key `as_given`. The property-based invariance tests of the full fingerprint
are in tests/outbox/test_canonical.py.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from mlip_autopipec.store.fingerprint import fingerprint

MODES = pytest.mark.parametrize("as_given", [False, True], ids=["full", "as_given"])


def five_elements(seed: int) -> Atoms:
    """A 2x2x2 fcc supercell with five elements in a random order, rattled."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)
    atoms.numbers = rng.permutation(np.repeat([13, 28, 29, 46, 79], [7, 7, 6, 6, 6]))
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def rattled_slab() -> Atoms:
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)  # periodic in x and y only
    slab.numbers[[1, 5]] = 79
    slab.rattle(0.05, seed=2)
    return slab


@MODES
def test_atom_order_and_periodic_wrapping_do_not_matter(as_given):
    cell = bulk("Cu", cubic=True) * (2, 2, 2)
    cell.rattle(0.05, seed=1)
    permuted = cell[np.random.default_rng(0).permutation(len(cell))]
    shifted = cell.copy()
    shifted.positions += cell.cell[0] + cell.cell[2]  # a whole lattice vector: same crystal
    assert len({fingerprint(a, as_given=as_given) for a in (cell, permuted, shifted)}) == 1


@MODES
def test_molecules_are_translation_and_order_invariant(as_given):
    ethanol = molecule("CH3CH2OH")
    moved = ethanol.copy()
    moved.translate([3.0, -1.0, 7.5])
    moved = moved[np.random.default_rng(3).permutation(len(moved))]
    assert fingerprint(ethanol, as_given=as_given) == fingerprint(moved, as_given=as_given)
    bent = ethanol.copy()
    bent.positions[0] += [0.0, 0.02, 0.0]
    assert fingerprint(ethanol, as_given=as_given) != fingerprint(bent, as_given=as_given)


@MODES
def test_a_real_displacement_changes_the_fingerprint(as_given):
    cell = bulk("Cu", cubic=True)
    displaced = cell.copy()
    displaced.positions[0, 0] += 0.01
    strained = cell.copy()
    strained.set_cell(cell.cell * 1.01, scale_atoms=True)
    assert len({fingerprint(a, as_given=as_given) for a in (cell, displaced, strained)}) == 3


@MODES
@pytest.mark.parametrize("seed", range(4))
def test_five_elements_any_atom_order_one_structure_any_other_ordering_another(as_given, seed):
    atoms = five_elements(seed)
    rng = np.random.default_rng(100 + seed)
    orders = [atoms[rng.permutation(len(atoms))] for _ in range(3)]
    wrapped = atoms.copy()
    wrapped.positions += atoms.cell.array.sum(axis=0) * rng.integers(-2, 3)  # whole cells, then wrapped
    wrapped.wrap()
    assert len({fingerprint(a, as_given=as_given) for a in [atoms, wrapped, *orders]}) == 1
    swapped = atoms.copy()  # two atoms of different elements change places: another alloy
    first, second = np.flatnonzero(atoms.numbers == 13)[0], np.flatnonzero(atoms.numbers == 79)[0]
    swapped.numbers[[first, second]] = swapped.numbers[[second, first]]
    other = five_elements(seed + 50)
    assert len({fingerprint(a, as_given=as_given) for a in (atoms, swapped, other)}) == 3


@MODES
def test_a_slab_is_one_structure_when_moved_along_its_vacuum_or_wrapped(as_given):
    slab = rattled_slab()
    rng = np.random.default_rng(4)
    moved = slab.copy()
    moved.translate([0.0, 0.0, 1.7])  # open direction
    moved.positions += slab.cell[0] - 2 * slab.cell[1]  # whole periodic vectors
    moved.wrap()
    moved = moved[rng.permutation(len(moved))]
    assert fingerprint(slab, as_given=as_given) == fingerprint(moved, as_given=as_given)
    lifted = slab.copy()  # one atom moved off the surface
    lifted.positions[-1, 2] += 0.3
    bulk_like = slab.copy()  # the same atoms, periodic in z too: another structure
    bulk_like.pbc = True
    assert len({fingerprint(a, as_given=as_given) for a in (slab, lifted, bulk_like)}) == 3


def test_only_the_full_fingerprint_ignores_periodic_translations_rotations_and_equivalent_cells():
    atoms = five_elements(7)
    translated = atoms.copy()
    translated.translate([0.37, -1.1, 2.3])
    translated.wrap()
    rotated = atoms.copy()
    rotated.rotate(33, "z", rotate_cell=True)
    recelled = atoms.copy()
    recelled.set_cell(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]) @ atoms.cell.array, scale_atoms=False)
    recelled.wrap()
    slab = rattled_slab()
    in_plane = slab.copy()
    in_plane.translate([0.9, 0.4, 0.0])
    in_plane.wrap()
    for copy, original in ((translated, atoms), (rotated, atoms), (recelled, atoms), (in_plane, slab)):
        assert fingerprint(copy) == fingerprint(original)
        # the store keeps such copies apart: their labels (forces, stress) are given in another frame
        assert fingerprint(copy, as_given=True) != fingerprint(original, as_given=True)


@MODES
@pytest.mark.parametrize("element", ["Cu", "Si"])
def test_a_supercell_is_not_its_primitive_cell(as_given, element):
    primitive = bulk(element)
    conventional = bulk(element, cubic=True)
    supercell = primitive.repeat((2, 1, 1))
    prints = {fingerprint(a, as_given=as_given) for a in (primitive, conventional, supercell)}
    assert len(prints) == 3


def test_values_stored_by_earlier_versions_do_not_move():
    """Stores hold the as-given key (duplicate check, split groups) and submit queues the full one."""
    cell = bulk("Cu", cubic=True) * (2, 1, 1)
    cell.rattle(0.05, seed=1)
    ethanol = molecule("CH3CH2OH")
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.rattle(0.05, seed=2)
    expected = {  # computed with the code before the two fingerprints became one module
        "bulk": ("70f24b81142d33a2f70b0d100de21f7a", "5883af20bbf97968d60f53b0cce1daf5"),
        "slab": ("936d533ffe89236a40e41e65dc4855cb", "d53c056a1dc45e8182df4790e71bb50f"),
        "molecule": ("1e2c3b8ab04d1f5942665e1f3e1c704e", "32762ac07f4bafdb91875c934e7e8bf8"),
    }
    for name, atoms in (("bulk", cell), ("slab", slab), ("molecule", ethanol)):
        assert (fingerprint(atoms, as_given=True), fingerprint(atoms)) == expected[name], name
