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


def _as_float(value) -> float:
    array = np.asarray(value, dtype=float)
    return float(array.reshape(-1)[0]) if array.size == 1 else float("nan")
