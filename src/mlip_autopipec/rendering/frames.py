"""Reading a trajectory for rendering, and the per-atom values atoms are coloured by.

Everything is checked before anything is drawn, so bad input fails with one clear message naming the
file, the frame and the field, and leaves no half-rendered output behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

ELEMENT = "element"
FORCE = "force"
GAMMA = "gamma"
FORCES_STD = "forces_std"  # a MACE committee's per-atom force deviation
AUTO = "auto"


# An element colour this light (Jmol's and OVITO's white hydrogen) vanishes on the white background:
# it is drawn in this grey instead.
TOO_LIGHT = 0.85
LIGHT_ELEMENT_GREY = (0.72, 0.72, 0.72)


def visible_on_white(rgb) -> tuple[float, float, float]:
    """An element colour as drawn on the white background: white hydrogen becomes light grey."""
    rgb = tuple(float(c) for c in rgb[:3])
    return LIGHT_ELEMENT_GREY if min(rgb) >= TOO_LIGHT else rgb


def caption(atoms: Atoms) -> str:
    """What a rendered frame shows in its corner: the trajectory frame, and the MD step or time."""
    parts = [f"frame {atoms.info.get('source_frame', '?')}"]
    if "md_step" in atoms.info:
        parts.append(f"MD step {atoms.info['md_step']}")
    elif "step" in atoms.info:
        parts.append(f"step {atoms.info['step']}")
    if "time" in atoms.info:
        parts.append(f"t = {float(atoms.info['time']):.4g} fs")
    return ", ".join(parts)


def label_font(size: int):
    """DejaVu Sans (it has γ and Å; Pillow's built-in font does not), else Pillow's default."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


class TrajectoryError(ValueError):
    """A trajectory that cannot be rendered; the message names the file, the frame and the field."""


@dataclass(frozen=True)
class Colouring:
    """What the atoms are coloured by: element types, or one value per atom on a shared scale."""

    by: str  # "element", "force" or the name of a per-atom array such as "gamma"
    label: str  # the colour bar's title
    values: list[np.ndarray] | None  # per frame, one value per atom; None when colouring by element
    low: float = 0.0
    high: float = 1.0


def read_trajectory(path: str | os.PathLike, every: int = 1) -> list[Atoms]:
    """Every `every`-th frame of anything `ase.io` reads; each frame must hold at least one atom."""
    path = Path(path)
    if every < 1:
        raise TrajectoryError(f"--every must be at least 1, got {every}")
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such file")
    try:
        frames = ase.io.read(path, ":")
    except Exception as exc:  # ASE raises many types for unreadable files; report them all the same way
        raise TrajectoryError(f"{path}: not a readable trajectory ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise TrajectoryError(f"{path}: no frames")
    for index, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise TrajectoryError(f"{path}: frame {index} has no atoms")
        if not np.isfinite(atoms.positions).all():
            raise TrajectoryError(f"{path}: frame {index}: field 'pos' has non-finite coordinates")
    picked = frames[::every]
    for atoms, index in zip(picked, range(0, len(frames), every)):
        atoms.info["source_frame"] = index
    return picked


def colouring(frames: list[Atoms], by: str, path: str | os.PathLike = "trajectory") -> Colouring:
    """The colouring `by` asks for, with one colour scale over all frames.

    `by` is "element", "force" (the norm of each atom's force), the name of a per-atom array in the
    file (γ is "gamma", a committee's force deviation "forces_std"), or "auto": the first of those two
    uncertainties that every frame has, else element."""
    if by == AUTO:
        by = next((name for name in (GAMMA, FORCES_STD) if all(name in atoms.arrays for atoms in frames)), ELEMENT)
    if by == ELEMENT:
        return Colouring(by=ELEMENT, label="element", values=None)
    values = [_per_atom_values(atoms, by, path) for atoms in frames]
    joined = np.concatenate(values)
    low, high = float(joined.min()), float(joined.max())
    if high - low < 1e-12:  # a flat field still needs a non-empty scale
        low, high = low - 0.5, high + 0.5
    label = {FORCE: "|F| (eV/Å)", GAMMA: "γ", FORCES_STD: "σ(F) (eV/Å)"}.get(by, by)
    return Colouring(by=by, label=label, values=values, low=low, high=high)


def _per_atom_values(atoms: Atoms, by: str, path: str | os.PathLike) -> np.ndarray:
    frame = atoms.info.get("source_frame", "?")
    if by == FORCE:
        forces = _forces(atoms)
        if forces is None:
            raise TrajectoryError(f"{path}: frame {frame} has no field 'forces' to colour by force")
        values = np.linalg.norm(forces, axis=1)
        field = "forces"
    else:
        if by not in atoms.arrays:
            available = sorted(set(atoms.arrays) - {"numbers", "positions"})
            raise TrajectoryError(f"{path}: frame {frame} has no per-atom array '{by}' to colour by "
                                  f"(per-atom arrays there: {', '.join(available) or 'none'}; "
                                  f"or use element or force)")
        values = np.asarray(atoms.arrays[by], dtype=float)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise TrajectoryError(f"{path}: frame {frame}: field '{by}' has {values.shape[1]} components "
                                  "per atom; colouring needs one value per atom")
        field = by
    if not np.isfinite(values).all():
        raise TrajectoryError(f"{path}: frame {frame}: field '{field}' has non-finite values")
    return values


def _forces(atoms: Atoms) -> np.ndarray | None:
    """Forces from the file: ASE puts extxyz `forces` on a single-point calculator, or keeps the array."""
    if atoms.calc is not None and "forces" in atoms.calc.results:
        return np.asarray(atoms.calc.results["forces"], dtype=float)
    if "forces" in atoms.arrays:
        return np.asarray(atoms.arrays["forces"], dtype=float)
    return None
