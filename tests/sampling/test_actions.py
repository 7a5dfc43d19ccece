"""Each action moves only movable atoms, by a magnitude inside its block's bounds (property-based)."""

import numpy as np
from ase.calculators.emt import EMT
from ase.geometry import find_mic
from hypothesis import given, settings
from hypothesis import strategies as st

from mlip_autopipec.sampling.actions import NotApplicable, apply_action, bond_graph, rigid_groups
from mlip_autopipec.sampling.config import (DihedralTwist, Jitter, MolecularDynamics, NoisePlugin, PushPull,
                                            RigidRotate, RigidTranslate)
from mlip_autopipec.sampling.plugins import add_noise
from mlip_autopipec.sampling.structure import fixed_mask
from tests.sampling.structures import cuni_bulk, ethanol, slab_with_adsorbate

SLAB = slab_with_adsorbate()
BULK = cuni_bulk()
ETHANOL = ethanol()
seeds = st.integers(0, 2**32 - 1)
EXAMPLES = settings(max_examples=15, deadline=None)


def bounds(top):
    """(min, max) pairs with 0 <= min <= max <= top and max not vanishingly small."""
    return st.tuples(st.floats(0.0, top), st.floats(0.0, top)).map(sorted).filter(lambda p: p[1] >= 0.02 * top)


def displacements(before, after):
    vectors, lengths = find_mic(after.positions - before.positions, before.cell, before.pbc)
    return vectors, lengths


def assert_fixed_unmoved(before, after):
    fixed = fixed_mask(before)
    assert fixed.any()
    assert np.array_equal(after.positions[fixed], before.positions[fixed])


@EXAMPLES
@given(seed=seeds, step=bounds(2.0), structure=st.sampled_from([SLAB, BULK]))
def test_rigid_translate_moves_one_group_by_one_vector(seed, step, structure):
    out = apply_action("rigid_translate", RigidTranslate(min_step=step[0], max_step=step[1]), structure,
                       np.random.default_rng(seed))
    vectors, lengths = displacements(structure, out.atoms)
    moved = lengths > 1e-9
    assert step[0] - 1e-9 <= out.magnitude <= step[1] + 1e-9
    assert_fixed_unmoved(structure, out.atoms)
    assert np.flatnonzero(moved).tolist() == out.details["atoms"]
    assert np.allclose(lengths[moved], out.magnitude)
    assert np.allclose(vectors[moved], vectors[moved][0])


def test_rigid_groups_follow_tags_and_fixed_atoms():
    groups = rigid_groups(SLAB, bond_graph(SLAB))
    oxygen = np.flatnonzero(SLAB.numbers == 8).tolist()
    assert oxygen in [g.tolist() for g in groups]  # the tagged molecule is a group of its own
    fixed = set(np.flatnonzero(fixed_mask(SLAB)).tolist())
    assert all(not (set(g.tolist()) & fixed) for g in groups)


def kabsch_angle(before, after):
    """Rotation angle (deg) taking centred `before` onto centred `after`."""
    p, q = before - before.mean(axis=0), after - after.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    rotation = (u @ vt).T
    return np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))


def unbroken(atoms, group, tree=None, bond=3.0):
    """Group positions as one piece, each atom placed by the minimum image of a short bond from the
    atom it was reached from (breadth-first over pairs closer than `bond`). Returns the positions and
    the tree of (parent, child) bonds, which `tree` reuses to unwrap the same group after a move."""
    if tree is None:
        tree, seen, queue = [], {group[0]}, [group[0]]
        while queue:
            parent = queue.pop(0)
            for child in group:
                if child not in seen and atoms.get_distance(parent, child, mic=True) < bond:
                    seen.add(child)
                    tree.append((parent, child))
                    queue.append(child)
    placed = {group[0]: atoms.positions[group[0]]}
    for parent, child in tree:
        vector, _ = find_mic(atoms.positions[child] - atoms.positions[parent], atoms.cell, atoms.pbc)
        placed[child] = placed[parent] + vector
    return np.array([placed[i] for i in group]), tree


@EXAMPLES
@given(seed=seeds, deg=bounds(180.0), structure=st.sampled_from([SLAB, BULK, ETHANOL]))
def test_rigid_rotate_turns_one_rigid_group_by_an_angle_in_bounds(seed, deg, structure):
    out = apply_action("rigid_rotate", RigidRotate(min_deg=deg[0], max_deg=deg[1]), structure,
                       np.random.default_rng(seed))
    group = out.details["atoms"]
    _, lengths = displacements(structure, out.atoms)
    assert np.all(lengths[np.setdiff1d(np.arange(len(structure)), group)] == 0)
    assert not fixed_mask(structure)[group].any()
    assert deg[0] - 1e-9 <= out.magnitude <= deg[1] + 1e-9
    before, tree = unbroken(structure, group)
    after, _ = unbroken(out.atoms, group, tree)
    assert np.allclose(np.linalg.norm(before[:, None] - before[None], axis=2),
                       np.linalg.norm(after[:, None] - after[None], axis=2), atol=1e-9)
    if len(group) == 2:  # a rotation about the bond itself is invisible: the bond turns by at most the angle
        cosine = np.dot(*(b[1] - b[0] for b in (before, after))) / np.linalg.norm(before[1] - before[0]) ** 2
        assert np.degrees(np.arccos(np.clip(cosine, -1, 1))) <= out.magnitude + 1e-6
    else:
        assert abs(kabsch_angle(before, after) - out.magnitude) < 1e-5


@EXAMPLES
@given(seed=seeds, delta=bounds(1.0), structure=st.sampled_from([SLAB, BULK, ETHANOL]))
def test_push_pull_changes_one_bond_by_delta(seed, delta, structure):
    out = apply_action("push_pull", PushPull(min_delta=delta[0], max_delta=delta[1]), structure,
                       np.random.default_rng(seed))
    i, j = out.details["atoms"]
    _, lengths = displacements(structure, out.atoms)
    others = np.setdiff1d(np.arange(len(structure)), [i, j])
    assert np.all(lengths[others] == 0)
    assert not fixed_mask(structure)[[i, j]].all()
    assert delta[0] - 1e-9 <= out.magnitude <= delta[1] + 1e-9
    before = structure.get_distance(i, j, mic=True)
    after = out.atoms.get_distance(i, j, mic=True)
    assert abs(abs(after - before) - out.magnitude) < 1e-9
    assert np.sign(after - before) == out.details["sign"]


@EXAMPLES
@given(seed=seeds, deg=bounds(180.0))
def test_dihedral_twist_rotates_one_side_of_a_bond(seed, deg):
    out = apply_action("dihedral_twist", DihedralTwist(min_deg=deg[0], max_deg=deg[1]), ETHANOL,
                       np.random.default_rng(seed))
    axis_atom, pivot = out.details["bond"]
    side = out.details["atoms"]
    _, lengths = displacements(ETHANOL, out.atoms)
    assert np.all(lengths[np.setdiff1d(np.arange(len(ETHANOL)), side)] == 0)
    assert deg[0] - 1e-9 <= out.magnitude <= deg[1] + 1e-9
    graph = bond_graph(ETHANOL)
    outer_i = next(n for n in graph.neighbors(axis_atom) if n != pivot)
    for outer_l in (n for n in graph.neighbors(pivot) if n != axis_atom):
        change = (out.atoms.get_dihedral(outer_i, axis_atom, pivot, outer_l)
                  - ETHANOL.get_dihedral(outer_i, axis_atom, pivot, outer_l)) % 360
        assert abs(min(change, 360 - change) - out.magnitude) < 1e-6
    assert np.allclose(out.atoms.get_all_distances()[np.ix_(side, side)],
                       ETHANOL.get_all_distances()[np.ix_(side, side)])


def test_dihedral_twist_does_not_apply_to_a_metal():
    try:
        apply_action("dihedral_twist", DihedralTwist(), BULK, np.random.default_rng(0))
    except NotApplicable as exc:
        assert "no rotatable single bond" in str(exc)
    else:
        raise AssertionError("a metal crystal has no rotatable single bond")


@EXAMPLES
@given(seed=seeds, sigma=st.floats(0.001, 0.5))
def test_jitter_moves_every_movable_atom_and_no_fixed_one(seed, sigma):
    out = apply_action("jitter", Jitter(sigma=sigma), SLAB, np.random.default_rng(seed))
    _, lengths = displacements(SLAB, out.atoms)
    movable = ~fixed_mask(SLAB)
    assert_fixed_unmoved(SLAB, out.atoms)
    assert np.all(lengths[movable] > 0)
    assert abs(np.sqrt(np.mean(lengths[movable] ** 2)) - out.magnitude) < 1e-9


@settings(max_examples=20, deadline=None)
@given(seed=seeds, sigma=st.floats(0.001, 0.5), clip=st.floats(0.001, 0.2), movable_only=st.booleans())
def test_noise_plugin_is_clipped_and_respects_movable_only(seed, sigma, clip, movable_only):
    out = add_noise(SLAB, NoisePlugin(name="noise", sigma=sigma, clip=clip, movable_only=movable_only),
                    np.random.default_rng(seed))
    shift = out.positions - SLAB.positions
    assert np.abs(shift).max() <= clip + 1e-12
    fixed = fixed_mask(SLAB)
    assert np.all(shift[fixed] == 0) == movable_only


def test_md_burst_moves_only_movable_atoms_at_a_temperature_in_bounds():
    settings_ = MolecularDynamics(enabled=True, min_temp_K=300, max_temp_K=900, min_steps=3, max_steps=6, dt_fs=2)
    for seed in range(3):
        out = apply_action("md", settings_, SLAB, np.random.default_rng(seed), calculator=EMT())
        assert 300 <= out.magnitude <= 900 and 3 <= out.details["steps"] <= 6
        assert_fixed_unmoved(SLAB, out.atoms)
        assert np.all(displacements(SLAB, out.atoms)[1][~fixed_mask(SLAB)] > 0)
