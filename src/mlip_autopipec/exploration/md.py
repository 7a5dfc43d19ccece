"""Langevin MD walkers that record the potential's uncertainty along the way.

A walker runs from a seed structure at one temperature, saving a frame every `record_every`
steps with the uncertainty the calculator reports: per-atom γ and `max_gamma` (Pacemaker's
PyACECalculator with an active set), or a committee's `forces_std` and `max_force_std` (eV/Å,
MACE committees). It stops early once the frame's `uncertainty_key` passes `uncertainty_upper`:
beyond that the potential is extrapolating so far that the trajectory is no longer physical, and
the frames collected so far are the useful candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from mlip_autopipec.files import atomic_path


@dataclass(frozen=True)
class WalkerSettings:
    temperature_K: float
    steps: int
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.01
    record_every: int = 10
    uncertainty_upper: float | None = 10.0
    seed: int = 0
    uncertainty_key: str = "max_gamma"  # or "max_force_std" for a committee


@dataclass
class WalkerResult:
    trajectory: Path  # extxyz; frames carry arrays["gamma"] + info["max_gamma"] and/or forces_std + max_force_std
    frames: int
    steps_done: int
    stopped_early: bool
    uncertainty: list[float] = field(default_factory=list)  # uncertainty_key per frame (empty without one)


def run_walker(seed_structure: Atoms, calculator: Calculator, settings: WalkerSettings,
               trajectory: str | Path, progress: Callable[[int, int], None] | None = None,
               keep_labels: bool = False) -> WalkerResult:
    """Run the walker; `keep_labels` keeps the calculator's energy, forces (and stress) with each
    recorded frame: when the calculator is the labeler, the frames are labelled without a second
    calculation."""
    atoms = seed_structure.copy()
    atoms.set_constraint(FixCom())  # no drift of the whole cell (ASE's recommended form of fixcm)
    atoms.calc = calculator
    rng = np.random.default_rng(settings.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(atoms, timestep=settings.timestep_fs * units.fs, temperature_K=settings.temperature_K,
                        friction=settings.friction_per_fs / units.fs, fixcm=False, rng=rng)

    frames: list[Atoms] = []
    uncertainty: list[float] = []
    steps_done = 0
    stopped_early = False
    while steps_done < settings.steps:
        chunk = min(settings.record_every, settings.steps - steps_done)
        dynamics.run(chunk)
        steps_done += chunk
        frame = _snapshot(atoms, steps_done, keep_labels)
        frames.append(frame)
        value = frame.info.get(settings.uncertainty_key)
        if value is not None:
            uncertainty.append(value)
            if settings.uncertainty_upper is not None and value > settings.uncertainty_upper:
                stopped_early = True
                break
        if progress is not None:
            progress(steps_done, settings.steps)

    with atomic_path(trajectory) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    return WalkerResult(Path(trajectory), len(frames), steps_done, stopped_early, uncertainty)


def _snapshot(atoms: Atoms, step: int, keep_labels: bool = False) -> Atoms:
    """A calculator-free copy holding what selection needs: geometry, uncertainty, the model's energy;
    with `keep_labels` also the energy, forces and stress the calculator computed here (cached: the
    dynamics just evaluated this geometry), on a SinglePointCalculator."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if keep_labels:
        from ase.calculators.singlepoint import SinglePointCalculator

        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(apply_constraint=False)}
        if atoms.pbc.all() and "stress" in atoms.calc.results:
            labels["stress"] = atoms.calc.results["stress"]
        frame.calc = SinglePointCalculator(frame, **labels)
    results = atoms.calc.results
    frame.info["md_step"] = step
    if "energy" in results:
        frame.info["model_energy"] = float(results["energy"])
    gamma = results.get("gamma")
    if gamma is not None:
        gamma = np.asarray(gamma, dtype=float)
        frame.arrays["gamma"] = gamma
        frame.info["max_gamma"] = float(gamma.max())
    if "forces_std" in results:
        frame.arrays["forces_std"] = np.asarray(results["forces_std"], dtype=float)
        frame.info["max_force_std"] = float(results["max_force_std"])
    return frame
