"""Read labelled frames from anything ase.io reads, or from Pacemaker's pickled DataFrame.

Readers never raise for a bad frame: they yield a FrameProblem in its place and carry on with
the next frame where the format allows it, so one broken frame never hides the good ones.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.problems import FrameProblem

PACEMAKER_SUFFIXES = (".pckl.gzip", ".pkl.gzip", ".pckl.gz", ".pkl.gz", ".pckl", ".pkl")
_XYZ_SUFFIXES = (".xyz", ".extxyz")

FrameOrProblem = tuple[int, LabelledFrame | FrameProblem]


def read_labelled_frames(path: str | os.PathLike) -> Iterator[FrameOrProblem]:
    """Yield (frame index, LabelledFrame or FrameProblem) for every frame of `path`."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        yield 0, FrameProblem(name, None, "file", "no such file")
        return
    if path.stat().st_size == 0:
        yield 0, FrameProblem(name, None, "file", "file is empty")
        return
    if path.name.endswith(PACEMAKER_SUFFIXES):
        yield from _read_pacemaker_dataframe(path)
    elif path.name.endswith(_XYZ_SUFFIXES):
        yield from _read_xyz_frame_by_frame(path)
    else:
        yield from _read_with_ase(path)


def _read_with_ase(path: Path) -> Iterator[FrameOrProblem]:
    index = -1
    try:
        for index, atoms in enumerate(ase.io.iread(path, index=":")):
            yield index, LabelledFrame.from_atoms(atoms)
    except Exception as exc:  # ase raises anything from KeyError to UnknownFileTypeError
        yield index + 1, FrameProblem(str(path), index + 1 if index >= 0 else None, "file",
                                      f"cannot read: {_describe(exc)}")
        return
    if index < 0:
        yield 0, FrameProblem(str(path), None, "file", "no structures found")


def _read_xyz_frame_by_frame(path: Path) -> Iterator[FrameOrProblem]:
    """Split an (ext)xyz file on its atom-count lines and parse each frame on its own."""
    name = str(path)
    try:
        lines = path.read_text().splitlines(keepends=True)
    except UnicodeDecodeError:
        yield 0, FrameProblem(name, None, "file", "not a text file, so not (ext)xyz")
        return
    position, index = 0, 0
    while position < len(lines):
        if not lines[position].strip():
            position += 1
            continue
        try:
            n_atoms = int(lines[position].split()[0])
        except ValueError:
            yield index, FrameProblem(name, index, "file",
                                      f"line {position + 1}: expected an atom count, "
                                      f"found {lines[position].strip()[:60]!r}")
            return
        chunk = lines[position:position + n_atoms + 2]
        if len(chunk) < n_atoms + 2 or any(not line.strip() for line in chunk[2:]):
            yield index, FrameProblem(name, index, "file",
                                      f"truncated: {n_atoms} atoms announced on line "
                                      f"{position + 1}, file ends first")
            return
        try:
            atoms = ase.io.read(io.StringIO("".join(chunk)), format="extxyz")
            yield index, LabelledFrame.from_atoms(atoms)
        except Exception as exc:
            yield index, FrameProblem(name, index, "file", f"cannot parse: {_describe(exc)}")
        position += n_atoms + 2
        index += 1
    if index == 0:
        yield 0, FrameProblem(name, None, "file", "no structures found")


def _read_pacemaker_dataframe(path: Path) -> Iterator[FrameOrProblem]:
    """Through the restricted unpickler (safe_pickle): a user's file never runs code here."""
    import pandas as pd

    from mlip_autopipec.data.safe_pickle import UnsafePickle, load_dataframe

    name = str(path)
    compression = None if path.suffix in {".pckl", ".pkl"} else "gzip"
    try:
        frame_table = load_dataframe(path, compression)
    except UnsafePickle as exc:
        yield 0, FrameProblem(name, None, "file", f"not read: {exc}")
        return
    except Exception as exc:
        yield 0, FrameProblem(name, None, "file",
                              f"not a Pacemaker pickled DataFrame: {_describe(exc)}")
        return
    if not isinstance(frame_table, pd.DataFrame) or "ase_atoms" not in frame_table.columns:
        yield 0, FrameProblem(name, None, "ase_atoms", "DataFrame has no 'ase_atoms' column")
        return
    if len(frame_table) == 0:
        yield 0, FrameProblem(name, None, "file", "no structures found")
        return
    has_energy = "energy" in frame_table.columns
    has_corrected = "energy_corrected" in frame_table.columns
    has_forces = "forces" in frame_table.columns
    for index, row in enumerate(frame_table.itertuples(index=False)):
        atoms = row.ase_atoms
        if not isinstance(atoms, Atoms):
            yield index, FrameProblem(name, index, "ase_atoms", f"not an ase.Atoms ({type(atoms).__name__})")
            continue
        corrected = _optional_float(row.energy_corrected) if has_corrected else None
        energy = _optional_float(row.energy) if has_energy else corrected
        forces = np.asarray(row.forces, dtype=float) if has_forces and row.forces is not None else None
        geometry = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        stress = None
        if atoms.calc is not None and "stress" in atoms.calc.results:
            stress = np.asarray(atoms.calc.results["stress"], dtype=float)
        yield index, LabelledFrame(geometry, energy, forces, stress, corrected)


def _optional_float(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
