"""Evaluate and infer with a FairChem checkpoint: the worker predicts a whole extxyz file in one start
of the FairChem interpreter; errors are computed here, in MACE's units (meV/atom, meV/Angstrom).
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


def infer_frames(python: Path, checkpoint: Path, frames: Sequence[Atoms], output: str | os.PathLike,
                 log_path: Path, *, energy_only: bool = False, cpu: bool = True, timeout: float = 3600.0,
                 env: dict[str, str] | None = None) -> Path:
    """Write `frames` with FAIRCHEM_energy / FAIRCHEM_forces to `output` (extxyz)."""
    import ase.io

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs, raw = output.with_name(output.name + ".input.extxyz"), output.with_name(output.name + ".raw.extxyz")
    with atomic_path(inputs) as staged:
        ase.io.write(staged, [Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                              for atoms in frames], format="extxyz")
    arguments = ["predict", "--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(raw)]
    if energy_only:
        arguments.append("--energy-only")
    if cpu:
        arguments.append("--cpu")
    try:
        call_worker(python, arguments, log_path, timeout, env)
        predicted = ase.io.read(raw, index=":", format="extxyz")
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
        raw.unlink(missing_ok=True)
    return output


def evaluate_frames(python: Path, checkpoint: Path, frames: Sequence[Atoms] | Path, predictions_path: Path,
                    log_path: Path, energy_only: bool = False, source: str | None = None,
                    **options) -> dict[str, float]:
    """RMSE/MAE of the labels of `frames` (or of an extxyz file) against the model's predictions
    (written to `predictions_path`)."""
    import ase.io

    if isinstance(frames, (str, os.PathLike)):
        source, frames = source or str(frames), ase.io.read(frames, index=":", format="extxyz")
    energy_reference, forces_reference = read_reference(frames, energy_only, source or "frames", "eval.energy_only")
    infer_frames(python, checkpoint, frames, predictions_path, log_path, energy_only=energy_only, **options)
    predicted = ase.io.read(predictions_path, index=":", format="extxyz")
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=float)
    energy_error = (np.array([atoms.info[PREFIX + "energy"] for atoms in predicted]) - energy_reference) / n_atoms
    force_error = None if energy_only else np.concatenate([
        (atoms.arrays[PREFIX + "forces"] - forces).reshape(-1) for atoms, forces in zip(predicted, forces_reference)])
    return {**error_metrics(energy_error, force_error), "atoms": float(n_atoms.sum())}
