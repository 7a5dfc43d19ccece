import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.sampling.quench import quench
from mlip_autopipec.sampling.structure import fixed_mask
from tests.sampling.structures import adatom_on_cu111


@pytest.mark.parametrize("method", ["fire", "bfgs", "lbfgs", "cg"])
def test_quench_lowers_the_energy_to_a_minimum_and_keeps_fixed_atoms(method):
    start = adatom_on_cu111()
    start.positions[~fixed_mask(start)] += np.random.default_rng(0).normal(scale=0.1, size=(10, 3))
    start.calc = EMT()
    energy_before = start.get_potential_energy()
    result = quench(start, EMT(), method, fmax=0.03, steps=500)
    assert result.converged and 0 < result.steps <= 500
    assert result.energy < energy_before - 0.05
    movable = ~fixed_mask(start)
    assert np.linalg.norm(result.forces[movable], axis=1).max() <= 0.03 + 1e-9
    assert np.array_equal(result.atoms.positions[~movable], start.positions[~movable])
    assert result.atoms.calc is None and fixed_mask(result.atoms).tolist() == fixed_mask(start).tolist()


def test_quench_none_only_evaluates():
    start = adatom_on_cu111()
    result = quench(start, EMT(), "none", fmax=0.05, steps=10)
    start.calc = EMT()
    assert result.steps == 0 and result.energy == pytest.approx(start.get_potential_energy())
    assert np.array_equal(result.atoms.positions, start.positions)
