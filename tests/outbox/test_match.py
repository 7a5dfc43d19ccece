"""Near duplicates mean "every atom within the tolerance": find_match against constructed truths,
pymatgen's StructureMatcher and an independent check of each proof; the outbox never skips a
distinct alloy ordering or a local move, and never submits a copy twice."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlip_autopipec.outbox import Candidate, descriptor, find_match, process_outbox
from mlip_autopipec.store.fingerprint import reduced_cell
from mlip_autopipec.outbox.descriptor import prefilter_threshold
from tests.outbox.test_canonical import UNIMODULAR, random_structure

TOL = 0.05
seeds = st.integers(0, 2**31 - 1)
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def alloy(seed: int, host: str = "Cu", guest: int = 28, a: float = 3.55, fraction: float = 1 / 3) -> Atoms:
    """A random ordering of a 32-atom fcc cell, lattice constant a +- 0.05 Å, rattled by 0.05 Å."""
    rng = np.random.default_rng(seed)
    atoms = bulk(host, "fcc", a=a + rng.uniform(-0.05, 0.05), cubic=True).repeat(2)
    numbers = atoms.numbers.copy()
    numbers[rng.choice(32, round(32 * fraction), replace=False)] = guest
    atoms.numbers = numbers
    atoms.rattle(0.05, seed=seed)
    return atoms


def five_element(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)
    atoms.numbers = rng.permutation(np.repeat([28, 29, 46, 47, 78], [7, 7, 6, 6, 6]))
    atoms.rattle(0.05, seed=seed)
    return atoms


def ethanol_like(seed: int) -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def copy_of(atoms: Atoms, rng) -> Atoms:
    """The same structure described differently: translated, permuted, equivalent cell, wrapped."""
    other = atoms.copy()
    other.translate(rng.uniform(-6, 6, 3))
    other = other[rng.permutation(len(other))]
    if other.pbc.all():
        other.set_cell(UNIMODULAR[int(rng.integers(len(UNIMODULAR)))] @ other.cell.array, scale_atoms=False)
        other.wrap()
    return other


def displaced(atoms: Atoms, rng, size: float, count: int | None = None) -> Atoms:
    """Every atom (or `count` atoms) moved by exactly `size` Å in a random direction."""
    other = atoms.copy()
    chosen = np.arange(len(atoms)) if count is None else rng.choice(len(atoms), count, replace=False)
    directions = rng.normal(size=(len(chosen), 3))
    other.positions[chosen] += size * directions / np.linalg.norm(directions, axis=1)[:, None]
    return other


def check_proof(a: Atoms, b: Atoms, match, tolerance: float) -> float:
    """Apply the match independently of find_match; the largest partner distance in Å."""
    assert sorted(match.permutation.tolist()) == list(range(len(a)))
    assert np.array_equal(a.numbers, b.numbers[match.permutation])
    if a.pbc.all():
        ra, fa = reduced_cell(a)
        rb, fb = reduced_cell(b)
        new_b = match.basis_change @ rb
        assert abs(abs(np.linalg.det(match.basis_change)) - 1) < 1e-9
        # the compared cell is new_b turned by a proper rotation, each vector within tolerance of a's
        assert np.allclose(match.cell @ match.cell.T, new_b @ new_b.T, atol=1e-8)
        assert np.sign(np.linalg.det(match.cell)) == np.sign(np.linalg.det(new_b))
        assert np.all(np.linalg.norm(match.cell - ra, axis=1) <= tolerance + 1e-9)
        coords_b = fb @ np.linalg.inv(match.basis_change) + match.translation
        diff = fa - coords_b[match.permutation]
        diff -= np.rint(diff)
        frame = (ra + match.cell) / 2
        return float(np.max(np.linalg.norm(diff @ frame, axis=1)))
    diff = a.positions - (b.positions + match.translation)[match.permutation]
    return float(np.max(np.linalg.norm(diff, axis=1)))


@fast
@given(seeds, st.sampled_from(["alloy", "triclinic", "five", "molecule"]), st.floats(0.0, 0.9))
def test_a_copy_moved_less_than_the_tolerance_is_found(seed, kind, fraction):
    rng = np.random.default_rng(seed)
    atoms = {"alloy": alloy, "triclinic": random_structure, "five": five_element,
             "molecule": ethanol_like}[kind](seed % 1000)
    other = displaced(copy_of(atoms, rng), rng, fraction * TOL)
    match = find_match(atoms, other, TOL)
    assert match is not None
    assert match.max_displacement <= TOL
    assert check_proof(atoms, other, match, TOL) <= TOL + 1e-9
    assert_prefilter_proposes(atoms, other)


def assert_prefilter_proposes(atoms: Atoms, other: Atoms) -> None:
    """The descriptor prefilter never misses a near duplicate."""
    limit = max(prefilter_threshold(atoms, TOL), prefilter_threshold(other, TOL))
    assert np.max(np.abs(descriptor(atoms) - descriptor(other))) <= limit


@fast
@given(seeds, st.sampled_from(["alloy", "triclinic", "five"]), st.floats(0.0, 0.9), st.floats(0.0, 0.9))
def test_a_strained_and_rattled_copy_is_found_and_proposed(seed, kind, strain, rattle):
    """Each cell vector moved by up to 0.9 tol (atoms follow), each atom by up to 0.9 tol more."""
    rng = np.random.default_rng(seed)
    atoms = {"alloy": alloy, "triclinic": random_structure, "five": five_element}[kind](seed % 1000)
    other = atoms.copy()
    change = rng.normal(size=(3, 3))
    change *= strain * TOL / np.linalg.norm(change, axis=1)[:, None]
    other.set_cell(atoms.cell.array + change, scale_atoms=True)
    other = displaced(copy_of(other, rng), rng, rattle * TOL)
    match = find_match(atoms, other, TOL)
    assert match is not None and check_proof(atoms, other, match, TOL) <= TOL + 1e-9
    assert_prefilter_proposes(atoms, other)


@fast
@given(seeds, st.sampled_from(["alloy", "triclinic", "five", "molecule"]), st.floats(1.05, 3.0))
def test_a_local_move_beyond_the_tolerance_is_never_a_duplicate(seed, kind, factor):
    """Two atoms of one species moved apart by factor x tolerance each: no translation brings both
    within the tolerance, so this is distinct whatever the permutation."""
    rng = np.random.default_rng(seed)
    atoms = {"alloy": alloy, "triclinic": random_structure, "five": five_element,
             "molecule": ethanol_like}[kind](seed % 1000)
    other = atoms.copy()
    species = atoms.numbers[rng.integers(len(atoms))]
    i, j = rng.choice(np.flatnonzero(atoms.numbers == species), 2, replace=atoms.numbers.tolist().count(species) < 2)
    direction = rng.normal(size=3)
    direction *= factor * TOL / np.linalg.norm(direction)
    other.positions[i] += direction
    if j != i:
        other.positions[j] -= direction
    else:  # a single atom of its species: move it twice as far, beyond what a translation can hide
        other.positions[i] += direction
    assert find_match(atoms, copy_of(other, rng), TOL) is None


def test_strained_cell_within_and_beyond_the_tolerance():
    atoms = alloy(3)
    stretched = atoms.copy()
    stretched.set_cell(atoms.cell.array * (1 + 0.6 * TOL / atoms.cell.lengths().max()), scale_atoms=True)
    assert find_match(atoms, stretched, TOL) is not None  # each cell vector and atom within 0.6 tol
    more = atoms.copy()
    more.set_cell(atoms.cell.array * (1 + 1.5 * TOL / atoms.cell.lengths().min()), scale_atoms=True)
    assert find_match(atoms, more, TOL) is None


def test_slab_copies_and_moves():
    slab = fcc111("Pd", size=(2, 2, 3), vacuum=5.0)
    slab.numbers[[1, 6]] = 47
    slab.rattle(0.02, seed=1)
    rng = np.random.default_rng(0)
    shifted = slab.copy()
    shifted.translate([1.3, 0.4, 0.0])
    shifted.wrap()
    shifted = shifted[rng.permutation(len(shifted))]
    assert find_match(slab, shifted, TOL) is not None
    assert find_match(slab, displaced(slab, rng, 0.3, count=1), TOL) is None


def test_different_species_or_periodicity_never_match():
    atoms = alloy(1)
    swapped = atoms.copy()
    cu, ni = np.flatnonzero(atoms.numbers == 29)[0], np.flatnonzero(atoms.numbers == 28)[0]
    swapped.numbers[[cu, ni]] = swapped.numbers[[ni, cu]]  # same composition, one Cu-Ni swap
    assert find_match(atoms, swapped, TOL) is None
    open_cell = atoms.copy()
    open_cell.pbc = False
    assert find_match(atoms, open_cell, TOL) is None


def test_a_rotated_molecule_counts_as_distinct():
    atoms = ethanol_like(0)
    rotated = atoms.copy()
    rotated.rotate(30, "z", center="COM")
    assert find_match(atoms, rotated, TOL) is None


@pytest.mark.parametrize("host, guest, move", [("Cu", 28, 0.40), ("Pd", 47, 0.30)])
def test_outbox_on_random_orderings_agrees_with_pymatgen(tmp_path, host, guest, move):
    """Random orderings, each offered again translated+wrapped, permuted with an image shift and in
    an equivalent cell, and with one atom moved: every ordering and every move is submitted, every
    copy skipped as a duplicate of its own original; pymatgen matches none of the orderings."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    rng = np.random.default_rng(7)
    orderings = [alloy(seed, host, guest, a=bulk(host).cell.cellpar()[0] * np.sqrt(2)) for seed in range(12)]
    candidates, expected_skips = [], {}
    for index, atoms in enumerate(orderings):
        candidates.append(Candidate(f"o{index}", atoms))
    for index, atoms in enumerate(orderings):
        image_shifted = atoms[rng.permutation(32)]
        image_shifted.positions[:5] += image_shifted.cell.array[0]  # an atom's periodic image, unwrapped
        for variant, structure in (("t", copy_of(atoms, rng)), ("p", image_shifted),
                                   ("m", displaced(atoms, rng, move, count=1))):
            candidates.append(Candidate(f"{variant}{index}", structure))
            if variant != "m":
                expected_skips[f"{variant}{index}"] = f"o{index}"
    order = rng.permutation(len(candidates))
    shuffled = [candidates[i] for i in order]
    # originals first so each copy is skipped in favour of its original
    shuffled.sort(key=lambda c: not c.id.startswith("o"))
    report = process_outbox(shuffled, None, None, tmp_path / "out", tolerance=TOL)
    submitted = {r["id"] for r in report.submitted}
    assert submitted == {f"o{i}" for i in range(12)} | {f"m{i}" for i in range(12)}
    assert {s["id"]: s["duplicate_of"] for s in report.skipped} == expected_skips

    matcher = StructureMatcher(ltol=0.2, stol=0.5, angle_tol=5, primitive_cell=False, scale=False,
                               attempt_supercell=False)
    structures = [AseAtomsAdaptor.get_structure(a) for a in orderings]
    assert not any(matcher.fit(structures[i], structures[j]) for i in range(12) for j in range(i + 1, 12))


@fast
@given(seeds, st.floats(0.0, 2.5))
def test_find_match_agrees_with_pymatgen(seed, factor):
    """Where pymatgen (mean translation) puts every atom within 0.9 tol, find_match matches; where
    find_match matches, pymatgen's largest distance is within twice the tolerance (its translation
    is the mean, ours minimises the largest displacement)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    rng = np.random.default_rng(seed)
    atoms = alloy(seed % 1000)
    other = displaced(copy_of(atoms, rng), rng, factor * TOL, count=int(rng.integers(1, 33)))
    a, b = (AseAtomsAdaptor.get_structure(x) for x in (atoms, other))
    normal = (atoms.get_volume() / len(atoms)) ** (1 / 3)
    matcher = StructureMatcher(ltol=0.05, stol=3 * TOL / normal, angle_tol=2, primitive_cell=False,
                               scale=False, attempt_supercell=False)
    found = matcher.get_rms_dist(a, b)
    pymatgen_max = None if found is None else found[1] * normal
    ours = find_match(atoms, other, TOL)
    if pymatgen_max is not None and pymatgen_max <= 0.9 * TOL:
        assert ours is not None
    if ours is not None:
        assert pymatgen_max is not None and pymatgen_max <= 2 * TOL + 1e-6
