"""What makes a rendered PNG a real picture, and a short real trajectory to render.

The trajectory: the 64-atom Cu phonon supercell of the shared DFT data (Cu-I.extxyz), run with EMT
Langevin MD at 1500 K, so atoms really move between frames. Each frame keeps EMT's forces and, as
the per-atom array named `gamma` (the name exploration walkers use), EMT's per-atom energy above the
frame's lowest one: a real per-atom field that varies between atoms and frames.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from PIL import Image

BACKGROUND = (255, 255, 255)  # what the renderers put behind the atoms


def cu_md_trajectory(shared_data: Path, target: Path, frames: int = 6, steps_between: int = 10,
                     gamma_scale: float = 1.0) -> Path:
    [start] = [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(atoms) == 64][:1]
    atoms = start.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(7)
    MaxwellBoltzmannDistribution(atoms, temperature_K=1500, rng=rng)
    dynamics = Langevin(atoms, timestep=2 * units.fs, temperature_K=1500, friction=0.02 / units.fs, fixcm=False,
                        rng=rng)
    recorded = []
    for _ in range(frames):
        dynamics.run(steps_between)
        frame = atoms.copy()
        energies = atoms.get_potential_energies()
        frame.arrays["gamma"] = gamma_scale * (energies - energies.min())
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        recorded.append(frame)
    ase.io.write(target, recorded, format="extxyz")
    return target


def pixels(path: str | Path) -> np.ndarray:
    """RGB pixels of a PNG, checking first that it is one."""
    path = Path(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def assert_real_picture(path: str | Path, size: tuple[int, int], min_colours: int = 50,
                        min_drawn: float = 0.03) -> np.ndarray:
    """Expected width x height, many distinct colours (shaded spheres, not flat fills), and a fair part
    of the picture drawn on (not background). Returns the pixels."""
    image = pixels(path)
    assert image.shape[:2] == (size[1], size[0]), f"{path}: {image.shape[1]}x{image.shape[0]}, wanted {size}"
    colours = len(np.unique(image.reshape(-1, 3), axis=0))
    assert colours >= min_colours, f"{path}: only {colours} distinct colours"
    drawn = float(np.any(image != BACKGROUND, axis=2).mean())
    assert drawn >= min_drawn, f"{path}: only {100 * drawn:.1f} % of the picture differs from the background"
    return image


def changed_fraction(first: np.ndarray, second: np.ndarray) -> float:
    """Share of pixels whose colour differs by more than a little (anti-aliasing noise aside)."""
    return float((np.abs(first.astype(int) - second.astype(int)).max(axis=2) > 24).mean())


def atom_area(image: np.ndarray) -> np.ndarray:
    """The picture without its top-right corner, where the legend or colour bar sits."""
    height, width = image.shape[:2]
    keep = np.ones((height, width), dtype=bool)
    keep[: height // 2, int(width * 0.7):] = False
    return image[keep]


def hue_count(path: str | Path) -> int:
    """How many of 16 hue bins hold at least 2 % of the coloured (saturated) atom pixels: one for a
    single element, several for a colour map over varying values."""
    with Image.open(path) as image:
        hsv = atom_area(np.asarray(image.convert("RGB").convert("HSV")))
    saturated = hsv[hsv[:, 1] > 80]
    shares = np.bincount(saturated[:, 0] // 16, minlength=16) / max(len(saturated), 1)
    return int((shares > 0.02).sum())
