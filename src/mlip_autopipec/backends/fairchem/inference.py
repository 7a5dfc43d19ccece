"""Evaluate and infer with a FairChem checkpoint: the worker predicts a whole extxyz file in one
start of the FairChem interpreter; the errors are computed here, in the same units as MACE's
(energy per atom in meV/atom, force components in meV/Angstrom).

Predictions are written as FAIRCHEM_energy (info) and FAIRCHEM_forces (arrays) beside the labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from mlip_autopipec.backends.fairchem.interpreter import call_worker
from mlip_autopipec.backends.run_yaml import read_reference
from mlip_autopipec.files import atomic_path
from mlip_autopipec.validation.errors import error_metrics

PREFIX = "FAIRCHEM_"


def predict_file(python: Path, checkpoint: Path, frames_path: Path, output: Path, log_path: Path, *,
                 energy_only: bool = False, cpu: bool = True, timeout: float = 3600.0,
                 env: dict[str, str] | None = None) -> list[Atoms]:
    """Predictions for every frame of `frames_path` (extxyz), written to `output` and returned."""
    import ase.io

    arguments = ["predict", "--checkpoint", str(checkpoint), "--input", str(frames_path), "--output", str(output)]
    if energy_only:
        arguments.append("--energy-only")
    if cpu:
        arguments.append("--cpu")
    call_worker(python, arguments, log_path, timeout, env)
    return ase.io.read(output, index=":", format="extxyz")


def infer_frames(python: Path, checkpoint: Path, frames: Sequence[Atoms], output: str | os.PathLike,
                 log_path: Path, **options) -> Path:
    """Write `frames` with FAIRCHEM_energy / FAIRCHEM_forces to `output` (extxyz)."""
    import ase.io

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output.with_name(output.name + ".input.extxyz")) as staged:
        ase.io.write(staged, [_geometry(atoms) for atoms in frames], format="extxyz")
    inputs = output.with_name(output.name + ".input.extxyz")
    try:
        predicted = predict_file(python, checkpoint, inputs, output.with_name(output.name + ".raw.extxyz"),
                                 log_path, **options)
        with atomic_path(output) as target:
            results = []
            for atoms, prediction in zip(frames, predicted, strict=True):
                result = atoms.copy()
                result.calc = atoms.calc
                result.info[PREFIX + "energy"] = prediction.info[PREFIX + "energy"]
                if PREFIX + "forces" in prediction.arrays:
                    result.arrays[PREFIX + "forces"] = prediction.arrays[PREFIX + "forces"]
                results.append(result)
            ase.io.write(target, results, format="extxyz")
    finally:
        inputs.unlink(missing_ok=True)
        output.with_name(output.name + ".raw.extxyz").unlink(missing_ok=True)
    return output


def evaluate_frames(python: Path, checkpoint: Path, frames: Sequence[Atoms], predictions_path: Path,
                    log_path: Path, energy_only: bool = False, source: str = "frames", **options) -> dict[str, float]:
    """RMSE/MAE of `frames`' labels against the model's predictions (written to `predictions_path`)."""
    energy_reference, forces_reference = read_reference(frames, energy_only=energy_only, source=source,
                                                        energy_only_option="eval.energy_only")
    infer_frames(python, checkpoint, frames, predictions_path, log_path, energy_only=energy_only, **options)
    import ase.io

    predicted = ase.io.read(predictions_path, index=":", format="extxyz")
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=float)
    energy_error = (np.array([atoms.info[PREFIX + "energy"] for atoms in predicted]) - energy_reference) / n_atoms
    force_error = None if energy_only else np.concatenate([
        (atoms.arrays[PREFIX + "forces"] - forces).reshape(-1) for atoms, forces in zip(predicted, forces_reference)])
    return {**error_metrics(energy_error, force_error), "atoms": float(n_atoms.sum())}


def evaluate_frames_file(python: Path, checkpoint: Path, frames_path: Path, predictions_path: Path,
                         log_path: Path, **options) -> dict[str, float]:
    import ase.io

    frames = ase.io.read(frames_path, index=":", format="extxyz")
    return evaluate_frames(python, checkpoint, frames, predictions_path, log_path, source=str(frames_path), **options)


def _geometry(atoms: Atoms) -> Atoms:
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
