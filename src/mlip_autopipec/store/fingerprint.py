"""Canonical fingerprints: the same structure always hashes to the same string.

Invariant under atom order, wrapping across periodic boundaries and (for non-periodic
directions) rigid translation. Positions are compared on a grid of `tolerance` Å, so two
frames differing by less than that are the same structure.
"""

from __future__ import annotations

import hashlib

import numpy as np
from ase import Atoms

DEFAULT_TOLERANCE = 1e-4


def fingerprint(atoms: Atoms, tolerance: float = DEFAULT_TOLERANCE) -> str:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    positions = np.asarray(atoms.positions, dtype=float)

    if pbc.any():
        scaled = atoms.cell.scaled_positions(positions) if abs(np.linalg.det(cell)) > 1e-12 else None
    else:
        scaled = None

    if scaled is None:
        coordinates = positions - positions.mean(axis=0) if len(atoms) else positions
    else:
        # Periodic directions: fractional coordinates wrapped to [0, 1), then back to Å so the
        # tolerance keeps its meaning; open directions: centred Cartesian coordinates.
        wrapped = np.where(pbc, scaled % 1.0, scaled)
        lengths = atoms.cell.lengths()
        coordinates = wrapped * lengths
        open_dirs = ~pbc
        if open_dirs.any():
            coordinates[:, open_dirs] -= coordinates[:, open_dirs].mean(axis=0)

    grid = np.rint(coordinates / tolerance).astype(np.int64)
    if scaled is not None:
        # A coordinate that rounds to the full period is the same point as zero.
        periods = np.rint(atoms.cell.lengths() / tolerance).astype(np.int64)
        for axis in np.flatnonzero(pbc):
            grid[grid[:, axis] >= periods[axis], axis] -= periods[axis]

    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], numbers)) if len(atoms) else []
    digest = hashlib.sha256()
    digest.update(pbc.tobytes())
    digest.update(np.rint(cell / tolerance).astype(np.int64).tobytes())
    digest.update(numbers[order].tobytes())
    digest.update(grid[order].tobytes())
    return digest.hexdigest()[:32]
