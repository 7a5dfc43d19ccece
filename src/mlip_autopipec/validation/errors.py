"""Prediction errors of an ASE calculator against labelled frames (energy per atom, forces).

`error_metrics` is the one place error metrics are computed and named, for every backend:
energy_rmse_mev_per_atom, energy_mae_mev_per_atom, forces_rmse_mev_per_angstrom,
forces_mae_mev_per_angstrom (force errors per Cartesian component, as Pacemaker and MACE report
them), frames. Energies are compared with the energy the potential was fitted to
(`EnergyReference`: Pacemaker's energy_corrected, MACE's and FairChem's energy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase.calculators.calculator import Calculator

from mlip_autopipec.data.frames import EnergyReference, LabelledFrame

ENERGY_RMSE = "energy_rmse_mev_per_atom"
ENERGY_MAE = "energy_mae_mev_per_atom"
FORCES_RMSE = "forces_rmse_mev_per_angstrom"
FORCES_MAE = "forces_mae_mev_per_angstrom"


def error_metrics(energy_error_per_atom: np.ndarray, force_error: np.ndarray | None = None) -> dict[str, float]:
    """RMSE and MAE in meV/atom and meV/Å (the units Pacemaker and MACE users quote) from errors in
    eV/atom (one per frame) and eV/Å (any shape: every Cartesian component counts)."""
    energy = 1000.0 * np.asarray(energy_error_per_atom, dtype=float).reshape(-1)
    metrics = {ENERGY_RMSE: _rmse(energy), ENERGY_MAE: _mae(energy), "frames": float(len(energy))}
    if force_error is not None:
        forces = 1000.0 * np.asarray(force_error, dtype=float).reshape(-1)
        metrics[FORCES_RMSE] = _rmse(forces)
        metrics[FORCES_MAE] = _mae(forces)
    return metrics


@dataclass
class Predictions:
    """Reference and predicted values, frame by frame, in eV and eV/Å."""

    n_atoms: np.ndarray  # (frames,)
    energy_reference: np.ndarray  # (frames,) eV
    energy_predicted: np.ndarray
    forces_reference: np.ndarray  # (total atoms, 3) eV/Å
    forces_predicted: np.ndarray
    frame_of_atom: np.ndarray  # (total atoms,) frame index of each force row
    max_gamma: np.ndarray | None = None  # (frames,) when the calculator reports extrapolation grades
    atom_gamma: np.ndarray | None = None  # (total atoms,) the same, per atom
    labels: list[str] = field(default_factory=list)
    energy_label: str = "energy"  # what energy_reference holds (EnergyReference.describe())

    @property
    def energy_per_atom_error(self) -> np.ndarray:
        return (self.energy_predicted - self.energy_reference) / self.n_atoms

    @property
    def force_error(self) -> np.ndarray:
        return self.forces_predicted - self.forces_reference

    def summary(self) -> dict[str, float]:
        """`error_metrics` of these predictions, and the largest γ when there is one."""
        metrics = error_metrics(self.energy_per_atom_error, self.force_error)
        if self.max_gamma is not None:
            metrics["max_gamma"] = float(np.max(self.max_gamma))
        return metrics

    def worst_frames(self, count: int = 5) -> list[dict]:
        """The frames with the largest energy-per-atom error, for a person to inspect."""
        order = np.argsort(-np.abs(self.energy_per_atom_error))[:count]
        force_rms = np.array([
            _rmse(self.force_error[self.frame_of_atom == i].reshape(-1)) for i in range(len(self.n_atoms))
        ])
        return [
            {"frame": int(i), "label": self.labels[i] if self.labels else str(i),
             "atoms": int(self.n_atoms[i]),
             "energy_error_mev_per_atom": float(1000.0 * self.energy_per_atom_error[i]),
             "forces_rmse_mev_per_angstrom": float(1000.0 * force_rms[i])}
            for i in order
        ]


def predict(calculator: Calculator, frames: Sequence[LabelledFrame], labels: Sequence[str] = (),
            progress: Callable[[int, int], None] | None = None,
            energy_reference: EnergyReference = EnergyReference()) -> Predictions:
    """Run `calculator` on every frame; collects gamma too when the calculator provides it.
    Energies are compared with `energy_reference.of(frame)`: pass the artifact's `energy_reference`."""
    if not frames:
        raise ValueError("no frames to evaluate on")
    energies, forces, gammas = [], [], []
    for index, frame in enumerate(frames):
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        gamma = calculator.results.get("gamma")
        if gamma is not None:
            gammas.append(np.asarray(gamma, dtype=float).reshape(-1))
        if progress is not None:
            progress(index + 1, len(frames))
    return Predictions(
        n_atoms=np.array([len(f.atoms) for f in frames], dtype=float),
        energy_reference=np.array([energy_reference.of(f) for f in frames], dtype=float),
        energy_predicted=np.array(energies, dtype=float),
        forces_reference=np.concatenate([f.forces for f in frames]),
        forces_predicted=np.concatenate(forces),
        frame_of_atom=np.concatenate([np.full(len(f.atoms), i) for i, f in enumerate(frames)]),
        max_gamma=np.array([g.max() for g in gammas]) if len(gammas) == len(frames) else None,
        atom_gamma=np.concatenate(gammas) if len(gammas) == len(frames) else None,
        labels=list(labels),
        energy_label=energy_reference.describe(),
    )


def _rmse(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else float("nan")


def _mae(values: np.ndarray) -> float:
    return float(np.mean(np.abs(values))) if len(values) else float("nan")
