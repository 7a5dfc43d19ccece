"""The labelled frame: a structure plus its reference energy, forces and (optionally) stress."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator


@dataclass
class LabelledFrame:
    atoms: Atoms  # geometry only; labels live in the fields below
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None = None
    energy_corrected: float | None = None  # Pacemaker's reference-corrected energy, when known

    @classmethod
    def from_atoms(cls, atoms: Atoms) -> LabelledFrame:
        """Take labels from the attached calculator's results (what ase.io readers produce)."""
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        energy = results.get("energy", results.get("free_energy"))
        forces = results.get("forces", atoms.arrays.get("forces"))
        stress = results.get("stress")
        corrected = atoms.info.get("energy_corrected")
        geometry = Atoms(
            numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
        )
        return cls(
            atoms=geometry,
            energy=None if energy is None else _as_float(energy),
            forces=None if forces is None else np.asarray(forces, dtype=float),
            stress=None if stress is None else np.asarray(stress, dtype=float),
            energy_corrected=None if corrected is None else _as_float(corrected),
        )

    def to_atoms(self) -> Atoms:
        """A copy of the geometry carrying the labels as ASE calculator results."""
        atoms = self.atoms.copy()
        results = {}
        if self.energy is not None:
            results["energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces
        if self.stress is not None:
            results["stress"] = self.stress
        atoms.calc = SinglePointCalculator(atoms, **results)
        if self.energy_corrected is not None:
            atoms.info["energy_corrected"] = self.energy_corrected
        return atoms


@dataclass(frozen=True)
class EnergyReference:
    """Which energy of a frame a potential's predictions are comparable with.

    Pacemaker fits `energy_corrected`: the DataFrame's column (which our export fills with the
    frame's `energy_corrected`, else its `energy`), or, when the fit was given `reference_energy`,
    `energy - sum of the atoms' reference energies + shift x atoms` (the `atomic_energies` it used).
    MACE and FairChem fit the total `energy`. Errors are only meaningful against this energy.
    """

    label: str = "energy"  # "energy" or "energy_corrected"
    atomic_energies: dict[str, float] | None = None  # Pacemaker's reference energies, "shift" included

    def of(self, frame: LabelledFrame) -> float:
        if frame.energy is None:
            raise ValueError("frame has no energy")
        if self.label != "energy_corrected":
            return float(frame.energy)
        if self.atomic_energies is not None:
            symbols = frame.atoms.get_chemical_symbols()
            return float(frame.energy - sum(self.atomic_energies.get(symbol, 0.0) for symbol in symbols)
                         + self.atomic_energies.get("shift", 0.0) * len(symbols))
        return float(frame.energy if frame.energy_corrected is None else frame.energy_corrected)

    def describe(self) -> str:
        if self.label != "energy_corrected":
            return "energy"
        if self.atomic_energies is not None:
            return "energy_corrected (energy minus the fit's reference energies)"
        return "energy_corrected"


def _as_float(value) -> float:
    array = np.asarray(value, dtype=float)
    return float(array.reshape(-1)[0]) if array.size == 1 else float("nan")
