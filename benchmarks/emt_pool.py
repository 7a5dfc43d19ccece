"""An EMT-labelled pool of fcc copper for the active-learning benchmark, and a test set drawn
from different trajectories (another random seed, other temperatures and strains).

Every frame is labelled with ASE's EMT (energy and forces). The pool mixes what a campaign meets:
  bulk MD       32-atom cubic cell, Langevin at several temperatures, lattice scaled ±2 %
  vacancy MD    31 atoms (one vacancy), Langevin
  surface MD    fcc(111) and fcc(100) slabs with vacuum, Langevin
  strained      32-atom cells under a random strain (up to ±6 %) with a small rattle

The test set uses the same recipes with a different seed and temperatures in between the pool's,
so no test frame comes from a pool trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from mlip_autopipec.files import atomic_path

LATTICE = 3.61  # Å, fcc Cu
TIMESTEP_FS = 2.0
EQUILIBRATION_STEPS = 150
SAMPLE_STRIDE = 20  # MD steps between two kept frames (40 fs: neighbouring frames decorrelate)


@dataclass(frozen=True)
class Recipe:
    """How many frames of which kind, at which temperatures."""

    bulk_temperatures: tuple[float, ...]
    vacancy_temperatures: tuple[float, ...]
    surface_temperatures: tuple[float, ...]
    frames_per_trajectory: int
    strained_frames: int


POOL_RECIPE = Recipe(bulk_temperatures=(300.0, 800.0, 1300.0, 1800.0), vacancy_temperatures=(600.0, 1200.0),
                     surface_temperatures=(400.0, 1000.0), frames_per_trajectory=25, strained_frames=50)
TEST_RECIPE = Recipe(bulk_temperatures=(500.0, 1500.0), vacancy_temperatures=(900.0,),
                     surface_temperatures=(700.0,), frames_per_trajectory=12, strained_frames=16)


def make_frames(recipe: Recipe, seed: int) -> list[Atoms]:
    """Labelled frames (SinglePointCalculator results, `info['config_type']` says the recipe)."""
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    for temperature in recipe.bulk_temperatures:
        cell = _cubic_cell(scale=1.0 + rng.uniform(-0.02, 0.02))
        frames += _md_frames(cell, temperature, recipe.frames_per_trajectory, rng, f"bulk_md_{temperature:.0f}K")
    for temperature in recipe.vacancy_temperatures:
        cell = _cubic_cell(scale=1.0)
        del cell[int(rng.integers(len(cell)))]
        frames += _md_frames(cell, temperature, recipe.frames_per_trajectory, rng,
                             f"vacancy_md_{temperature:.0f}K")
    for temperature in recipe.surface_temperatures:
        for name, build in (("111", fcc111), ("100", fcc100)):
            slab = build("Cu", size=(2, 2, 4), a=LATTICE, vacuum=6.0, periodic=True)
            frames += _md_frames(slab, temperature, recipe.frames_per_trajectory // 2, rng,
                                 f"surface{name}_md_{temperature:.0f}K")
    for _ in range(recipe.strained_frames):
        cell = _cubic_cell(scale=1.0)
        strain = rng.uniform(-0.06, 0.06, size=(3, 3))
        cell.set_cell(cell.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        cell.positions += rng.normal(0.0, 0.05, size=cell.positions.shape)
        frames.append(_labelled(cell, "strained"))
    return frames


def write_pool_and_test(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write `emt_pool.extxyz` (seed) and `emt_test.extxyz` (seed + 1000) into `directory`."""
    directory = Path(directory)
    paths = (directory / "emt_pool.extxyz", directory / "emt_test.extxyz")
    for path, recipe, frame_seed in ((paths[0], POOL_RECIPE, seed), (paths[1], TEST_RECIPE, seed + 1000)):
        frames = make_frames(recipe, frame_seed)
        with atomic_path(path) as tmp:
            ase.io.write(tmp, frames, format="extxyz")
    return paths


def _cubic_cell(scale: float) -> Atoms:
    return bulk("Cu", "fcc", a=LATTICE * scale, cubic=True).repeat((2, 2, 2))


def _md_frames(atoms: Atoms, temperature: float, count: int, rng: np.random.Generator, label: str) -> list[Atoms]:
    atoms = atoms.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, timestep=TIMESTEP_FS * units.fs, temperature_K=temperature, friction=0.02,
                        fixcm=False, rng=rng)
    dynamics.run(EQUILIBRATION_STEPS)
    frames = []
    for _ in range(count):
        dynamics.run(SAMPLE_STRIDE)
        frames.append(_labelled(atoms, label))
    return frames


def _labelled(atoms: Atoms, label: str) -> Atoms:
    copy = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    copy.calc = EMT()
    energy, forces = copy.get_potential_energy(), copy.get_forces()
    copy.calc = SinglePointCalculator(copy, energy=energy, forces=forces)
    copy.info["config_type"] = label
    return copy
