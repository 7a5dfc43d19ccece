"""Physical checks beyond the test set: equation of state and cubic elastic constants.

Each quantity is computed for the potential and, when one is given, for the reference labeler
(EMT, GPAW, ...) on the same crystal, so the report can quote relative errors.

- Equation of state: energies at volumes within ±6 % of the starting cell, fitted with ASE's
  Birch-Murnaghan form -> equilibrium volume per atom V0 (Å³), bulk modulus B (GPa).
- Elastic constants of a cubic crystal at its own equilibrium volume: C11, C12, C44 (GPa) from
  central differences of the stress under ±0.5 % strains when the calculator gives stress
  (EMT and PyACECalculator do), else from the curvature of the energy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.eos import EquationOfState
from ase.units import GPa

VOLUME_SPAN = 0.06  # ±6 % in volume
VOLUME_POINTS = 11
STRAIN = 0.005  # ±0.5 % for the elastic constants


@dataclass
class EquationOfStateResult:
    volumes_per_atom: list[float]  # Å³/atom, the scanned points
    energies_per_atom: list[float]  # eV/atom
    v0_per_atom: float  # Å³/atom
    e0_per_atom: float  # eV/atom
    bulk_modulus_gpa: float
    lattice_constant: float  # of the cubic cell at V0 (Å)


@dataclass
class ElasticResult:
    c11_gpa: float
    c12_gpa: float
    c44_gpa: float
    method: str  # "stress" or "energy"

    @property
    def bulk_modulus_gpa(self) -> float:
        return (self.c11_gpa + 2.0 * self.c12_gpa) / 3.0

    @property
    def born_stable(self) -> bool:
        """Born's mechanical stability criteria of a cubic crystal."""
        return bool(self.c11_gpa > abs(self.c12_gpa) and self.c11_gpa + 2 * self.c12_gpa > 0 and self.c44_gpa > 0)


@dataclass
class PhysicalProperties:
    """What one calculator says about one crystal."""

    eos: EquationOfStateResult
    elastic: ElasticResult | None  # None for non-cubic cells

    def scalars(self) -> dict[str, float]:
        values = {"v0_per_atom": self.eos.v0_per_atom, "bulk_modulus_gpa": self.eos.bulk_modulus_gpa,
                  "lattice_constant": self.eos.lattice_constant}
        if self.elastic is not None:
            values.update(c11_gpa=self.elastic.c11_gpa, c12_gpa=self.elastic.c12_gpa,
                          c44_gpa=self.elastic.c44_gpa)
        return values


@dataclass
class PhysicalComparison:
    structure: dict  # symbol, crystal, lattice constant, atoms
    potential: PhysicalProperties
    reference: PhysicalProperties | None = None
    reference_name: str | None = None
    relative_errors: dict[str, float] = field(default_factory=dict)  # (potential - reference) / |reference|

    def to_dict(self) -> dict:
        def describe(props: PhysicalProperties) -> dict:
            return {**asdict(props), "scalars": props.scalars(),
                    "born_stable": None if props.elastic is None else props.elastic.born_stable}

        return {
            "structure": self.structure,
            "potential": describe(self.potential),
            "reference": None if self.reference is None else describe(self.reference),
            "reference_name": self.reference_name,
            "relative_errors": self.relative_errors,
        }


def cubic_crystal(symbol: str, crystal: str | None = None, lattice: float | None = None) -> Atoms:
    """The conventional cubic cell (fcc: 4 atoms, bcc: 2, ...); ASE's reference state when not given."""
    try:
        return bulk(symbol, crystal, a=lattice, cubic=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot build a cubic {crystal or 'reference'} crystal of {symbol!r} "
                         f"(lattice {lattice}): {exc}") from exc


def equation_of_state(calculator: Calculator, atoms: Atoms, span: float = VOLUME_SPAN,
                      points: int = VOLUME_POINTS) -> EquationOfStateResult:
    """Scan volumes within ±span of `atoms`' cell (atoms scaled with it) and fit Birch-Murnaghan."""
    n = len(atoms)
    volumes, energies = [], []
    base_cell = np.array(atoms.cell)
    for factor in np.linspace(1.0 - span, 1.0 + span, points):
        scaled = atoms.copy()
        scaled.set_cell(base_cell * factor ** (1.0 / 3.0), scale_atoms=True)
        scaled.calc = calculator
        volumes.append(scaled.get_volume() / n)
        energies.append(scaled.get_potential_energy() / n)
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    try:
        v0, e0, b = fit.fit()
    except Exception as exc:  # ASE raises bare exceptions when the fit has no minimum
        raise ValueError(f"equation of state has no minimum within ±{span:.0%} of the given cell "
                         f"(energies {np.round(energies, 4).tolist()} eV/atom): {exc}") from exc
    if not (volumes[0] <= v0 <= volumes[-1]):
        raise ValueError(f"equilibrium volume {v0:.3f} Å³/atom lies outside the scanned range "
                         f"{volumes[0]:.3f}-{volumes[-1]:.3f}; start from a better lattice constant")
    lattice = float(np.cbrt(v0 * n / abs(np.linalg.det(base_cell))) * np.linalg.norm(base_cell[0]))
    return EquationOfStateResult(volumes_per_atom=[float(v) for v in volumes],
                                 energies_per_atom=[float(e) for e in energies],
                                 v0_per_atom=float(v0), e0_per_atom=float(e0),
                                 bulk_modulus_gpa=float(b / GPa), lattice_constant=lattice)


def has_stress(calculator: Calculator, atoms: Atoms) -> bool:
    probe = atoms.copy()
    probe.calc = calculator
    try:
        stress = probe.get_stress()
    except (PropertyNotImplementedError, NotImplementedError, KeyError):
        return False
    return stress is not None and np.all(np.isfinite(stress))


def cubic_elastic_constants(calculator: Calculator, atoms: Atoms, strain: float = STRAIN,
                            method: str = "auto") -> ElasticResult:
    """C11, C12, C44 of a cubic crystal (cell axes along x, y, z) at the cell of `atoms`.

    method: "stress" (central differences of the stress), "energy" (curvature of E(strain)),
    or "auto" (stress when the calculator gives it).
    """
    if method == "auto":
        method = "stress" if has_stress(calculator, atoms) else "energy"
    if method == "stress":
        return _elastic_from_stress(calculator, atoms, strain)
    if method == "energy":
        return _elastic_from_energy(calculator, atoms, strain)
    raise ValueError(f"unknown method {method!r}: use auto, stress or energy")


def _strained(atoms: Atoms, epsilon: np.ndarray) -> Atoms:
    """Apply a symmetric strain tensor: cell rows r -> r (I + ε), atoms move with the cell."""
    strained = atoms.copy()
    strained.set_cell(np.array(atoms.cell) @ (np.eye(3) + epsilon), scale_atoms=True)
    return strained


def _stress(calculator: Calculator, atoms: Atoms) -> np.ndarray:
    atoms.calc = calculator
    return np.asarray(atoms.get_stress(voigt=True), dtype=float)  # xx yy zz yz xz xy, eV/Å³


def _elastic_from_stress(calculator: Calculator, atoms: Atoms, strain: float) -> ElasticResult:
    normal = np.zeros((3, 3))
    normal[0, 0] = strain
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = strain / 2.0  # engineering shear strain γ_yz = strain
    d_normal = (_stress(calculator, _strained(atoms, normal)) - _stress(calculator, _strained(atoms, -normal))) / (2 * strain)
    d_shear = (_stress(calculator, _strained(atoms, shear)) - _stress(calculator, _strained(atoms, -shear))) / (2 * strain)
    # ASE's stress is +(1/V) dE/dε, so σ = C ε with the usual sign.
    return ElasticResult(c11_gpa=float(d_normal[0] / GPa), c12_gpa=float(0.5 * (d_normal[1] + d_normal[2]) / GPa),
                         c44_gpa=float(d_shear[3] / GPa), method="stress")


def _curvature(calculator: Calculator, atoms: Atoms, direction: np.ndarray, strain: float) -> float:
    """d²(E/V0)/ds² at s=0 for the strain s·direction, from a quadratic fit over 5 points."""
    steps = np.linspace(-2 * strain, 2 * strain, 5)
    volume = atoms.get_volume()
    energies = []
    for s in steps:
        strained = _strained(atoms, s * direction)
        strained.calc = calculator
        energies.append(strained.get_potential_energy() / volume)
    return float(2.0 * np.polyfit(steps, energies, 2)[0])


def _elastic_from_energy(calculator: Calculator, atoms: Atoms, strain: float) -> ElasticResult:
    uniaxial = np.diag([1.0, 0.0, 0.0])  # E/V = C11 s²/2
    biaxial = np.diag([1.0, 1.0, 0.0])  # E/V = (C11 + C12) s²
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = 0.5  # γ = s: E/V = C44 s²/2
    c11 = _curvature(calculator, atoms, uniaxial, strain)
    c11_plus_c12 = 0.5 * _curvature(calculator, atoms, biaxial, strain)
    c44 = _curvature(calculator, atoms, shear, strain)
    return ElasticResult(c11_gpa=c11 / GPa, c12_gpa=(c11_plus_c12 - c11) / GPa, c44_gpa=c44 / GPa,
                         method="energy")


def is_cubic(atoms: Atoms, tolerance: float = 1e-6) -> bool:
    cell = np.array(atoms.cell)
    return bool(np.allclose(cell, np.eye(3) * cell[0, 0], atol=tolerance * max(1.0, abs(cell[0, 0]))))


def physical_properties(calculator: Calculator, atoms: Atoms, method: str = "auto") -> PhysicalProperties:
    """EOS from `atoms`' cell, then elastic constants at the calculator's own equilibrium volume."""
    eos = equation_of_state(calculator, atoms)
    elastic = None
    if is_cubic(atoms):
        at_v0 = atoms.copy()
        factor = (eos.v0_per_atom * len(atoms) / atoms.get_volume()) ** (1.0 / 3.0)
        at_v0.set_cell(np.array(atoms.cell) * factor, scale_atoms=True)
        elastic = cubic_elastic_constants(calculator, at_v0, method=method)
    return PhysicalProperties(eos=eos, elastic=elastic)


def compare_physical(potential: Calculator, atoms: Atoms, reference: Calculator | None = None,
                     reference_name: str | None = None, method: str = "auto") -> PhysicalComparison:
    """The potential's EOS and elastic constants, the reference's, and relative errors."""
    structure = {"formula": atoms.get_chemical_formula(), "atoms": len(atoms),
                 "lattice_constant": float(np.linalg.norm(np.array(atoms.cell)[0])), "cubic": is_cubic(atoms)}
    mine = physical_properties(potential, atoms, method)
    comparison = PhysicalComparison(structure=structure, potential=mine)
    if reference is not None:
        theirs = physical_properties(reference, atoms, method)
        comparison.reference = theirs
        comparison.reference_name = reference_name or type(reference).__name__
        comparison.relative_errors = relative_errors(mine.scalars(), theirs.scalars())
    return comparison


def relative_errors(values: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    errors = {}
    for key, ref in reference.items():
        if key in values:
            errors[key] = float((values[key] - ref) / abs(ref)) if ref != 0 and math.isfinite(ref) else float("nan")
    return errors


# -- per-element force errors --------------------------------------------------------------------

def per_element_force_errors(predictions, symbols: Sequence[str]) -> dict[str, dict[str, float]]:
    """Force RMSE and MAE (meV/Å) per chemical element; `symbols` has one entry per force row
    (all frames' atoms concatenated, as in `Predictions.forces_reference`)."""
    symbols = np.asarray(list(symbols))
    errors = 1000.0 * predictions.force_error
    if len(symbols) != len(errors):
        raise ValueError(f"{len(symbols)} symbols for {len(errors)} force rows")
    table = {}
    for element in sorted(set(symbols.tolist())):
        rows = errors[symbols == element].reshape(-1)
        table[element] = {"atoms": int(np.sum(symbols == element)),
                          "forces_rmse_mev_per_angstrom": float(np.sqrt(np.mean(rows ** 2))),
                          "forces_mae_mev_per_angstrom": float(np.mean(np.abs(rows)))}
    return table
