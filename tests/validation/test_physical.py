"""Equation of state and cubic elastic constants: EMT against itself, EMT's physics, a real ACE fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.validation.errors import predict
from mlip_autopipec.validation.physical import (
    compare_physical,
    cubic_crystal,
    cubic_elastic_constants,
    equation_of_state,
    per_element_force_errors,
)


@pytest.fixture
def copper():
    return cubic_crystal("Cu", "fcc", 3.61)


def test_emt_against_itself_has_zero_relative_error(copper):
    comparison = compare_physical(EMT(), copper, EMT(), "emt")
    assert set(comparison.relative_errors) == {"v0_per_atom", "bulk_modulus_gpa", "lattice_constant",
                                               "c11_gpa", "c12_gpa", "c44_gpa"}
    assert all(value == 0.0 for value in comparison.relative_errors.values())
    assert comparison.to_dict()["reference_name"] == "emt"


def test_emt_copper_is_physical(copper):
    eos = equation_of_state(EMT(), copper)
    assert 120.0 < eos.bulk_modulus_gpa < 160.0  # experiment ~140 GPa, EMT ~134 GPa
    assert 3.55 < eos.lattice_constant < 3.65
    assert eos.v0_per_atom == pytest.approx(eos.lattice_constant ** 3 / 4, rel=1e-9)
    at_v0 = cubic_crystal("Cu", "fcc", eos.lattice_constant)
    elastic = cubic_elastic_constants(EMT(), at_v0)
    assert elastic.method == "stress"
    # Cubic stability (Born): C11 > |C12|, C11 + 2 C12 > 0, C44 > 0; and B = (C11 + 2 C12) / 3.
    assert elastic.c11_gpa > abs(elastic.c12_gpa) and elastic.c44_gpa > 0
    assert 150 < elastic.c11_gpa < 200 and 90 < elastic.c12_gpa < 140 and 60 < elastic.c44_gpa < 110
    assert elastic.bulk_modulus_gpa == pytest.approx(eos.bulk_modulus_gpa, rel=0.01)
    assert elastic.born_stable


def test_energy_curvature_agrees_with_stress(copper):
    # They agree at zero pressure only (under pressure the two strain derivatives differ by ~P).
    at_v0 = cubic_crystal("Cu", "fcc", equation_of_state(EMT(), copper).lattice_constant)
    from_stress = cubic_elastic_constants(EMT(), at_v0, method="stress")
    from_energy = cubic_elastic_constants(EMT(), at_v0, method="energy")
    assert from_energy.method == "energy"
    for name in ("c11_gpa", "c12_gpa", "c44_gpa"):
        assert getattr(from_energy, name) == pytest.approx(getattr(from_stress, name), rel=0.02)


def test_calculator_without_stress_falls_back_to_energy(copper):
    class EnergyOnly(EMT):
        implemented_properties = ["energy", "forces"]

    assert cubic_elastic_constants(EnergyOnly(), copper).method == "energy"


@pytest.mark.filterwarnings("ignore:The minimum volume of your fit")
def test_eos_without_minimum_in_range_is_a_clear_error():
    squeezed = cubic_crystal("Cu", "fcc", 3.2)  # far below EMT's 3.59 Å
    with pytest.raises(ValueError, match="lattice constant|no minimum"):
        equation_of_state(EMT(), squeezed)


def test_per_element_force_errors():
    from ase.build import bulk

    from mlip_autopipec.data.frames import LabelledFrame

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[:2] = "Au"
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    frame = LabelledFrame(atoms=atoms.copy(), energy=atoms.get_potential_energy(),
                          forces=atoms.get_forces() + 0.01)  # every component off by 10 meV/Å
    predictions = predict(EMT(), [frame])
    table = per_element_force_errors(predictions, atoms.get_chemical_symbols())
    assert set(table) == {"Au", "Cu"} and table["Au"]["atoms"] == 2 and table["Cu"]["atoms"] == 6
    for row in table.values():
        assert row["forces_rmse_mev_per_angstrom"] == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(ValueError, match="symbols"):
        per_element_force_errors(predictions, ["Cu"])


@pytest.mark.slow
def test_tiny_pacemaker_potential_gives_finite_numbers(generation_1, copper):
    from mlip_autopipec.backends import get_trainer

    artifact = generation_1.artifact
    calculator = get_trainer(artifact.backend).make_calculator(artifact)
    comparison = compare_physical(calculator, copper, EMT(), "emt")
    values = comparison.potential.scalars()
    assert comparison.potential.elastic.method == "stress"
    assert all(math.isfinite(v) for v in values.values()), values
    assert all(math.isfinite(v) for v in comparison.relative_errors.values())
    assert np.all(np.isfinite(comparison.potential.eos.energies_per_atom))
    print("tiny ACE vs EMT:", values, comparison.relative_errors)
