"""The structures a campaign starts from: seeds, generation 0's perturbed copies, the held-out set."""

from __future__ import annotations

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk

from mlip_autopipec.campaign.config import BootstrapSettings, SeedSpec, ValidationSettings
from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.exploration.md import WalkerSettings, run_walker


def build_seeds(specs: list[SeedSpec], seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    structures = []
    for spec in specs:
        if spec.file is not None:
            structures.append(ase.io.read(spec.file))
            continue
        atoms = bulk(spec.bulk, spec.crystalstructure, a=spec.a, cubic=spec.crystalstructure in {"fcc", "bcc"})
        atoms = atoms.repeat(spec.repeat)
        free = rng.permutation(len(atoms))
        start = 0
        for element, fraction in sorted(spec.substitute.items()):
            count = int(round(fraction * len(atoms)))
            atoms.symbols[free[start:start + count]] = element
            start += count
        structures.append(atoms)
    return structures


def perturbed_copies(seeds: list[Atoms], settings: BootstrapSettings, seed: int) -> list[Atoms]:
    """Rattled, isotropically strained copies of each seed: a spread generation 0 can fit."""
    rng = np.random.default_rng(seed)
    copies = []
    for structure in seeds:
        for _ in range(settings.per_seed):
            atoms = structure.copy()
            strain = 1.0 + rng.uniform(-settings.max_strain, settings.max_strain)
            atoms.set_cell(atoms.cell * strain, scale_atoms=True)
            atoms.positions += rng.normal(0.0, settings.rattle_stdev, atoms.positions.shape)
            copies.append(atoms)
    return copies


def held_out_snapshots(seeds: list[Atoms], settings: ValidationSettings, labeler: CalculatorSpec,
                       seed: int, workdir) -> list[Atoms]:
    """Snapshots of MD run with the labeler itself: configurations the campaign should learn,
    drawn from trajectories that exploration never sees (own random seeds)."""
    snapshots = []
    record_every = max(1, settings.md_steps // settings.snapshots_per_run)
    for seed_index, structure in enumerate(seeds):
        for t_index, temperature in enumerate(settings.md_temperatures_K):
            walker = WalkerSettings(temperature_K=temperature, steps=settings.md_steps,
                                    record_every=record_every, uncertainty_upper=None,
                                    seed=10_000 + 100 * seed + 10 * seed_index + t_index)
            result = run_walker(structure, labeler.build(), walker,
                                workdir / f"held-out-{seed_index}-{t_index}.extxyz")
            snapshots.extend(ase.io.read(result.trajectory, ":"))
    return snapshots
