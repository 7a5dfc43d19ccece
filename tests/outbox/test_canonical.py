"""Invariance of the fingerprint (store/fingerprint.py) and the near-duplicate descriptor (property-based)."""

import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlip_autopipec.outbox import descriptor
from mlip_autopipec.store.fingerprint import canonicalize, fingerprint

NEAR = 0.05
# Unimodular integer matrices: each gives the same lattice in another basis.
UNIMODULAR = [np.array(m) for m in (
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
    [[0, 1, 0], [1, 0, 0], [0, 0, -1]],
    [[1, 0, 0], [1, 1, 0], [-1, 0, 1]],
    [[2, 1, 0], [1, 1, 0], [0, 0, 1]],
    [[1, 0, 1], [0, -1, 0], [0, 1, 1]],
)]


def random_structure(seed: int, n: int = 12, cubic: bool = False) -> Atoms:
    rng = np.random.default_rng(seed)
    if cubic:
        cell = np.eye(3) * 6.0
    else:
        cell = np.diag(rng.uniform(5.0, 7.0, 3)) + rng.uniform(-1.0, 1.0, (3, 3)) * (1 - np.eye(3))
    # a jittered grid keeps atoms apart (no overlapping atoms, distinct environments)
    grid = np.array(np.meshgrid(*[np.arange(3)] * 3, indexing="ij")).reshape(3, -1).T / 3
    frac = grid[rng.choice(len(grid), n, replace=False)] + rng.uniform(-0.06, 0.06, (n, 3))
    numbers = rng.choice([29, 29, 29, 8, 1], n)
    numbers[0] = 79
    return Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


def same(a: Atoms, b: Atoms) -> bool:
    return fingerprint(a) == fingerprint(b)


def near(a: Atoms, b: Atoms) -> float:
    return float(np.max(np.abs(descriptor(canonicalize(a)) - descriptor(canonicalize(b)))))


seeds = st.integers(0, 2**31 - 1)
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(seeds, st.lists(st.floats(-20, 20), min_size=3, max_size=3), st.booleans())
def test_translation_and_wrapping(seed, shift, cubic):
    atoms = random_structure(seed, cubic=cubic)
    moved = atoms.copy()
    moved.translate(shift)
    unwrapped = moved.copy()
    moved.wrap()
    assert same(atoms, moved) and same(atoms, unwrapped)
    assert near(atoms, moved) < 1e-8


@fast
@given(seeds, st.randoms(use_true_random=False))
def test_permutation(seed, random):
    atoms = random_structure(seed)
    order = list(range(len(atoms)))
    random.shuffle(order)
    assert same(atoms, atoms[order])


@fast
@given(seeds, st.sampled_from(range(len(UNIMODULAR))), st.booleans())
def test_equivalent_cell(seed, which, cubic):
    atoms = random_structure(seed, cubic=cubic)
    other = atoms.copy()
    other.set_cell(UNIMODULAR[which] @ atoms.cell.array, scale_atoms=False)
    other.wrap()
    assert same(atoms, other)
    assert near(atoms, other) < 1e-8


@fast
@given(seeds, st.floats(0, 360), st.floats(0, 360))
def test_rigid_rotation_with_cell(seed, alpha, beta):
    atoms = random_structure(seed)
    other = atoms.copy()
    other.rotate(alpha, "x", rotate_cell=True)
    other.rotate(beta, "z", rotate_cell=True)
    assert same(atoms, other)


@fast
@given(seeds, st.integers(0, 11), st.floats(0.2, 0.5))
def test_real_displacement_is_not_a_duplicate(seed, index, size):
    atoms = random_structure(seed)
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=3)
    moved = atoms.copy()
    moved.positions[index] += size * direction / np.linalg.norm(direction)
    assert not same(atoms, moved)
    assert near(atoms, moved) > NEAR


def test_descriptor_moves_at_most_twice_the_displacement():
    rng = np.random.default_rng(5)
    for seed in range(20):
        atoms = random_structure(seed)
        moved = atoms.copy()
        moved.positions += rng.uniform(-0.01, 0.01, moved.positions.shape)
        assert near(atoms, moved) <= 2 * 0.01 * np.sqrt(3) + 1e-9


def test_canonical_form_is_deterministic_and_wrapped():
    atoms = random_structure(3)
    shifted = atoms.copy()
    shifted.translate([7.0, -3.0, 11.0])
    canon = canonicalize(shifted)
    frac = canon.get_scaled_positions(wrap=False)
    assert np.all(frac > -1e-9) and np.all(frac < 1 + 1e-9)
    assert list(canon.numbers) == sorted(canon.numbers)
    again = canonicalize(canon)
    assert np.allclose(again.cell.array, canon.cell.array)
    assert same(canon, atoms)


def test_molecule_translation_and_permutation():
    rng = np.random.default_rng(0)
    mol = Atoms("H2OCH4", positions=rng.uniform(0, 3, (8, 3)))
    moved = mol.copy()
    moved.translate([1.0, 2.0, -5.0])
    assert same(mol, moved[[3, 1, 0, 2, 7, 6, 5, 4]])
    other = mol.copy()
    other.positions[2] += [0.3, 0.0, 0.0]
    assert not same(mol, other)


@pytest.mark.parametrize("size", [1, 2])
def test_supercell_of_one_species_cubic(size):
    from ase.build import bulk
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((size, size, size))
    atoms.rattle(0.05, seed=1)
    other = atoms.copy()
    other.set_cell(UNIMODULAR[2] @ atoms.cell.array, scale_atoms=False)
    other.translate([0.7, 1.3, -2.2])
    other.wrap()
    assert same(atoms, other[::-1])


def test_the_niggli_basis_change_is_the_one_of_ases_public_reduction():
    from ase.build.niggli import niggli_reduce_cell

    from mlip_autopipec.store.fingerprint import _niggli_basis_change

    rng = np.random.default_rng(7)
    for _ in range(200):
        cell = np.diag(rng.uniform(2.0, 9.0, 3)) + rng.uniform(-4.0, 4.0, (3, 3))
        if abs(np.linalg.det(cell)) < 1.0:
            continue
        np.testing.assert_array_equal(_niggli_basis_change(cell), niggli_reduce_cell(cell)[1])
