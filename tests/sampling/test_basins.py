"""A basin found again is recognised; a different basin is not."""

import json

import numpy as np
from ase.calculators.emt import EMT
from ase.geometry import find_mic

from mlip_autopipec.sampling import run_sampling
from mlip_autopipec.sampling.basins import BasinRegistry
from mlip_autopipec.sampling.quench import quench
from mlip_autopipec.sampling.structure import fixed_mask, load_npz
from tests.sampling.structures import adatom_on_cu111, cu_bulk, rules


def test_registry_recognises_a_moved_relabelled_requenched_copy():
    registry = BasinRegistry(tolerance=0.05, energy_tolerance=1e-3)
    start = quench(cu_bulk(), EMT(), "fire", 0.02, 300)
    registry.add(registry.describe(start.atoms, start.energy))

    copy = start.atoms.copy()
    rng = np.random.default_rng(1)
    copy.positions += [0.7, -1.3, 2.1]  # translated, wrapped, permuted, shaken and quenched again
    copy.wrap()
    copy = copy[rng.permutation(len(copy))]
    copy.positions += rng.normal(scale=0.05, size=copy.positions.shape)
    again = quench(copy, EMT(), "fire", 0.02, 300)
    assert registry.find(registry.describe(again.atoms, again.energy)) is registry.basins[0]

    vacancy = start.atoms.copy()
    del vacancy[5]
    other = quench(vacancy, EMT(), "fire", 0.02, 300)
    assert registry.find(registry.describe(other.atoms, other.energy)) is None


def hollow_kind(atoms) -> str:
    """hcp hollow: the adatom sits above an atom of the bottom (second) layer; fcc: above none."""
    adatom = int(np.flatnonzero(atoms.get_tags() == 2)[0])
    bottom = np.flatnonzero(fixed_mask(atoms))
    lateral = atoms.positions[bottom] - atoms.positions[adatom]
    lateral[:, 2] = 0
    _, distances = find_mic(lateral, atoms.cell, atoms.pbc)
    return "hcp" if distances.min() < 0.5 else "fcc"


def test_walk_registers_fcc_and_hcp_hollows_once_and_recognises_revisits(tmp_path):
    sampling = rules(rigid_translate={"min_step": 1.0, "max_step": 1.8}, pipeline={"trigger": {"max_force": None}})
    summary = run_sampling(adatom_on_cu111(), EMT(), sampling, tmp_path, steps=10, seed=0)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    basins = [json.loads(line) for line in (tmp_path / "basins.jsonl").read_text().splitlines()]

    kind_of_basin = {b["basin"]: hollow_kind(load_npz(tmp_path / "structures" / b["structure"], "quenched_"))
                     for b in basins}
    assert sorted(kind_of_basin.values()) == ["fcc", "hcp"] and kind_of_basin[0] == "fcc"
    accepted = [s for s in steps if s["accepted"]]
    for step in accepted:
        quenched = load_npz(tmp_path / step["structure"], "quenched_")
        assert kind_of_basin[step["basin"]] == hollow_kind(quenched)
    revisits = [s for s in accepted if not s["new_basin"]]
    assert len(revisits) >= 2 and {s["basin"] for s in revisits} == {0, 1}
    assert summary.new_basins == 1 and summary.basins_total == 2


def test_registry_tells_apart_two_orderings_of_one_alloy_cell():
    """Same composition, same cell, same energy passed in: only which atom is Ni differs."""
    from ase.build import bulk
    registry = BasinRegistry(tolerance=0.05, energy_tolerance=1e-3)
    first = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    second = first.copy()
    first.numbers[[0, 1, 2, 3]] = 28              # a Ni tetrahedron: Ni atoms are each other's neighbours
    second.numbers[[0, 4, 8, 12]] = 28            # one Ni in each of four conventional cells
    registry.add(registry.describe(first, -1.0))
    assert registry.find(registry.describe(second, -1.0)) is None
    assert registry.find(registry.describe(first[::-1], -1.0)) is registry.basins[0]
