"""DIRECT sampling on a pool of rattled copies of a few distinct structures, built with ASE."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT

from mlip_autopipec.data.problems import InputError
from mlip_autopipec.selection.direct import (
    direct_sample,
    direct_sample_files,
    read_pool,
    select_initial_training_set,
    stratified_pick,
    structure_descriptors,
)

GROUP_SIZES = (8, 3, 5, 2, 6)  # unequal on purpose: the pick must not follow the group sizes


def distinct_structures():
    """fcc Cu bulk, a vacancy, a (111) slab, a 4 % strained cell and a Ni-substituted cell."""
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    vacancy = base.copy()
    del vacancy[5]
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0, periodic=True)
    slab.info.clear()  # adsorption-site metadata that extxyz cannot store
    strained = base.copy()
    strained.set_cell(base.cell * 1.04, scale_atoms=True)
    substituted = base.copy()
    substituted.symbols[[0, 9, 18]] = "Ni"
    return [base, vacancy, slab, strained, substituted]


def rattled_pool(sizes=GROUP_SIZES, labelled: bool = False):
    """Near-identical copies (0.01 Å rattles) of each distinct structure, groups interleaved."""
    frames, groups = [], []
    for copy in range(max(sizes)):
        for group, (structure, size) in enumerate(zip(distinct_structures(), sizes)):
            if copy < size:
                atoms = structure.copy()
                atoms.rattle(0.01, seed=100 * group + copy)
                if labelled:
                    atoms.calc = EMT()
                    atoms.get_forces()
                frames.append(atoms)
                groups.append(group)
    return frames, np.array(groups)


def test_every_distinct_group_is_covered_before_any_is_repeated():
    frames, groups = rattled_pool()
    selection = direct_sample(frames, n_clusters=5, n_select=12, seed=0)
    picked_groups = groups[selection.picked]
    assert len(selection.picked) == 12 and len(set(selection.picked)) == 12
    assert sorted(picked_groups[:5]) == [0, 1, 2, 3, 4]
    # Round two: every group with a second copy gives one before any gives a third.
    assert sorted(picked_groups[5:10]) == [0, 1, 2, 3, 4]
    assert set(picked_groups[10:]) <= {0, 2, 4} and len(set(picked_groups[10:])) == 2
    # The clusters are the groups: same partition, whatever the label numbers.
    pairs = set(zip(selection.cluster_of_frame.tolist(), groups.tolist()))
    assert len(pairs) == 5 and sorted(selection.cluster_sizes, reverse=True) == sorted(GROUP_SIZES, reverse=True)


def test_the_pick_is_deterministic_for_a_seed():
    frames, _ = rattled_pool()
    first = direct_sample(frames, n_clusters=5, n_select=15, seed=3)
    again = direct_sample(frames, n_clusters=5, n_select=15, seed=3)
    other = direct_sample(frames, n_clusters=5, n_select=15, seed=4)
    assert first.picked == again.picked
    assert first.picked[:5] == other.picked[:5]  # the central structures do not depend on the seed
    assert first.picked != other.picked


def test_round_robin_skips_exhausted_clusters():
    rng = np.random.default_rng(0)
    sizes = [1, 4, 2]
    clusters = np.repeat(np.arange(3), sizes)
    coordinates = rng.normal(size=(7, 2)) + 10 * clusters[:, None]
    picked = stratified_pick(coordinates, clusters, n_select=7, seed=0)
    assert sorted(picked) == list(range(7))
    assert clusters[picked].tolist() == [0, 1, 2, 1, 2, 1, 1]
    central = np.argmin(np.linalg.norm(coordinates[1:5] - coordinates[1:5].mean(axis=0), axis=1)) + 1
    assert picked[1] == central


def test_descriptor_is_an_average_per_structure():
    """A supercell is the same material: per-structure averages must not see the repetition, nor
    the order of the atoms; a composition change must show."""
    base, _, _, _, substituted = distinct_structures()
    shuffled = base[np.random.default_rng(0).permutation(len(base))]
    descriptors = structure_descriptors([base, base * (2, 1, 1), shuffled, substituted])
    assert descriptors.shape[0] == 4 and np.abs(descriptors[0]).max() > 0
    np.testing.assert_allclose(descriptors[1], descriptors[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(descriptors[2], descriptors[0], rtol=1e-8, atol=1e-10)
    assert np.abs(descriptors[3] - descriptors[0]).max() > 1e-3


def test_files_keep_labels_and_name_bad_input(tmp_path):
    frames, groups = rattled_pool(labelled=True)
    pool = tmp_path / "pool.extxyz"
    ase.io.write(pool, frames)
    picked = select_initial_training_set([pool], count=5, seed=0)
    assert len(picked) == 5
    for atoms in picked:
        source = int(atoms.info["direct_source"].split(":")[1])
        assert atoms.get_potential_energy() == pytest.approx(frames[source].get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), frames[source].get_forces(), atol=1e-6)  # extxyz precision
    assert sorted(groups[int(a.info["direct_source"].split(":")[1])] for a in picked) == [0, 1, 2, 3, 4]

    truncated = tmp_path / "truncated.extxyz"
    truncated.write_text(pool.read_text()[:-200])
    output = tmp_path / "out" / "picked.extxyz"
    with pytest.raises(InputError, match=f"truncated.extxyz: frame {len(frames) - 1}: file: truncated"):
        direct_sample_files([pool, truncated], output, n_clusters=3)
    broken = frames[0].copy()
    broken.positions[2, 1] = np.nan
    ase.io.write(tmp_path / "nan.extxyz", [frames[1], broken])
    with pytest.raises(InputError, match="nan.extxyz: frame 1: positions: not finite"):
        read_pool([tmp_path / "nan.extxyz"])
    assert not output.exists() and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="n_clusters"):
        direct_sample(frames, n_clusters=0)


def test_pools_too_small_or_too_alike_for_the_clusters_asked():
    base = distinct_structures()[0]
    single = direct_sample([base], n_clusters=5)
    assert single.picked == [0] and single.cluster_sizes == [1]
    copies = direct_sample([base.copy() for _ in range(4)], n_clusters=3, n_select=4)
    assert copies.cluster_sizes == [4] and sorted(copies.picked) == [0, 1, 2, 3]
    frames, groups = rattled_pool(sizes=(1, 1, 2, 1, 1))
    few = direct_sample(frames, n_clusters=10)  # 6 structures, 5 groups: no cluster stays empty
    assert len(few.picked) == len(few.cluster_sizes) <= 6 and set(groups[few.picked]) == set(range(5))


def test_asking_for_more_structures_than_the_pool_holds_is_an_error():
    frames, _ = rattled_pool(sizes=(2, 2, 1))
    with pytest.raises(ValueError, match="n_select = 6, but the pool holds only 5 structures"):
        direct_sample(frames, n_clusters=3, n_select=6)
    assert len(direct_sample(frames, n_clusters=3, n_select=5).picked) == 5  # all of them is fine


def test_a_rare_element_is_always_in_the_picks():
    """Thirty Cu cells and one with a single Ni atom, all in one cluster: the round-robin pick takes
    the central cell and one at random; step 5 swaps the Ni cell in for the random one."""
    from mlip_autopipec.selection.direct import cover_every_element

    frames = []
    for index in range(31):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.rattle(0.05, seed=index)
        if index == 17:
            atoms.symbols[3] = "Ni"
        frames.append(atoms)
    selection = direct_sample(frames, n_clusters=1, n_select=2, seed=0)
    assert 17 in selection.picked and selection.added_for_elements == {"Ni": 17}
    assert selection.summary()["added_for_elements"] == {"Ni": 17}
    # What step 4 alone picked: the central cell first, and not the Ni cell.
    alone = stratified_pick(selection.coordinates, selection.cluster_of_frame, 2, seed=0)
    assert 17 not in alone and selection.picked == [alone[0], 17]
    # Nothing to do where every element is picked already; no room with fewer picks than elements.
    assert cover_every_element(frames, [17, 0]) == ([17, 0], {})
    assert cover_every_element(frames, [0]) == ([0], {})  # Cu would be lost: one pick, two elements
