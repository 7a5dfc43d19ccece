"""The fingerprint of a structure: one hash for every description of one structure.

`fingerprint` hashes what stays the same for every description of one structure: periodic cells
are Niggli-reduced; the hash covers the Niggli metric tensor and the fractional coordinates,
minimised over the lattice's automorphisms (integer changes of basis that keep the metric, which
covers the equivalent Niggli bases of cubic, hexagonal, ... lattices) and over the choice of origin
(each atom of the least frequent species is tried at the origin), so rigid translations, rotations
with the cell, periodic wrapping, atom permutations and equivalent cells all give the same hash.
Slabs and wires keep their cell (origin tried on the rarest species along the periodic directions);
molecules are centred. Coordinates are compared on a grid of `tolerance` Å.

`fingerprint(..., as_given=True)` is the store's duplicate key of a frame (`fingerprint` of every
row): the cell as given, atom order, periodic wrapping and translation along open directions ignored,
on a grid of 0.1 mÅ. It stays beside the full one because (1) it is 50-300x cheaper (1000 Cu-II
frames: 0.13 s against 9 s; a 108-atom cubic cell: 0.5 ms against 180 ms), and every ingested frame
pays it, and (2) existing stores hold it for every row: their duplicate check and their train/test
split (a seeded hash of it per group) must not move. The store records the full fingerprint too
(`canonical_fingerprint`, for the outbox), filled in when first asked for.

`canonicalize` gives the standard description the full fingerprint starts from: periodic cells
Niggli-reduced, rotated into ASE's standard orientation (a along x, b in the xy plane), atoms
wrapped into the cell and sorted by (atomic number, fractional coordinates); non-periodic
structures centred.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.build.niggli import niggli_reduce_cell

try:  # ASE's private reduction step: half the cost of the public function, which also rotates the cell
    from ase.build.niggli import _niggli_reduce
except ImportError:  # an ASE that renamed it (requirements say ase>=3.23): the public function
    _niggli_reduce = None

DEFAULT_TOLERANCE = 1e-3  # Å: grid of the full fingerprint (the outbox's exact duplicates)
# Å: grid of the store's duplicate key; a different value would change the keys existing stores hold
AS_GIVEN_TOLERANCE = 1e-4


def fingerprint(atoms: Atoms, tolerance: float | None = None, as_given: bool = False,
                assume_canonical: bool = False) -> str:
    """The structure's hash (see the module); `tolerance` defaults to DEFAULT_TOLERANCE, or to
    AS_GIVEN_TOLERANCE with `as_given`. `assume_canonical=True` promises `atoms` came from
    `canonicalize` (saves a reduction)."""
    if as_given:
        return _as_given_fingerprint(atoms, AS_GIVEN_TOLERANCE if tolerance is None else tolerance)
    return _canonical_fingerprint(atoms, DEFAULT_TOLERANCE if tolerance is None else tolerance, assume_canonical)


def fully_periodic(atoms: Atoms) -> bool:
    return bool(np.all(atoms.pbc)) and abs(np.linalg.det(atoms.cell.array)) > 1e-9


def reduced_cell(atoms: Atoms, assume_reduced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(Niggli-reduced cell, fractional coordinates in it wrapped to [0, 1))."""
    original = np.asarray(atoms.cell.array, dtype=float)
    if assume_reduced:
        cell = original
    else:
        cell = _niggli_basis_change(original).T @ original  # the reduced basis, original orientation
    frac = np.linalg.solve(cell.T, np.asarray(atoms.positions, dtype=float).T).T
    frac -= np.floor(frac)
    frac[frac >= 1.0 - 1e-12] = 0.0
    return cell, frac


def _niggli_basis_change(cell: np.ndarray) -> np.ndarray:
    """The integer basis change of ASE's Niggli reduction of a full-rank cell (same tolerance as
    `ase.build.niggli.niggli_reduce_cell`, which also builds a rotated cell from cell parameters:
    half of its time, and a cell this module does not use)."""
    if _niggli_reduce is None:
        return niggli_reduce_cell(cell)[1]
    g0 = np.array([cell[0] @ cell[0], cell[1] @ cell[1], cell[2] @ cell[2],
                   2 * (cell[1] @ cell[2]), 2 * (cell[2] @ cell[0]), 2 * (cell[0] @ cell[1])])
    _, change = _niggli_reduce(g0, 1e-5 * abs(np.linalg.det(cell)) ** (1 / 3))
    return change


def canonicalize(atoms: Atoms) -> Atoms:
    """A new Atoms in the canonical description (the input is not modified)."""
    numbers = np.asarray(atoms.numbers)
    if fully_periodic(atoms):
        cell, frac = reduced_cell(atoms)
        # standard orientation (a along x, b in the xy plane): the Cholesky factor of the metric
        standard = np.linalg.cholesky(cell @ cell.T)
        if np.linalg.det(cell) < 0:  # keep the handedness of the reduced basis
            standard = -standard
        key = np.round(frac, 8)
        order = np.lexsort((key[:, 2], key[:, 1], key[:, 0], numbers))
        return Atoms(numbers=numbers[order], scaled_positions=frac[order], cell=standard, pbc=True)
    positions = np.asarray(atoms.positions, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        out = atoms.copy()
        out.calc = None
        out.wrap()
        positions = out.positions
    centred = positions - positions.mean(axis=0) if len(atoms) else positions
    key = np.round(centred, 8)
    order = np.lexsort((key[:, 2], key[:, 1], key[:, 0], numbers))
    return Atoms(numbers=numbers[order], positions=centred[order], cell=atoms.cell.array.copy(), pbc=pbc)


# Integer vectors with entries in {-1, 0, 1}: the rows of every basis change between Niggli-reduced cells
BASIS_ROWS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
BASIS_ROWS = BASIS_ROWS[np.any(BASIS_ROWS != 0, axis=1)]


@lru_cache(maxsize=4096)
def _automorphisms(metric_key: tuple, tol: float) -> np.ndarray:
    """Basis changes U (new = U @ old, rows as vectors) that keep the metric; cached per metric.

    Entries in {-1, 0, 1} suffice for a Niggli-reduced basis. Each row of U must keep one basis
    vector's length, so rows are chosen per vector first and only those combinations are checked.
    """
    metric = np.array(metric_key, dtype=float).reshape(3, 3)
    scale = max(np.max(np.abs(np.diag(metric))), 1e-12)
    norms = np.einsum("ri,ij,rj->r", BASIS_ROWS, metric, BASIS_ROWS)
    choices = [BASIS_ROWS[np.abs(norms - metric[i, i]) <= tol * scale] for i in range(3)]
    found = []
    for r0 in choices[0]:
        for r1 in choices[1]:
            if abs(r0 @ metric @ r1 - metric[0, 1]) > tol * scale:
                continue
            for r2 in choices[2]:
                op = np.array([r0, r1, r2])
                if abs(abs(np.linalg.det(op)) - 1) > 1e-6:
                    continue
                if np.all(np.abs(op @ metric @ op.T - metric) <= tol * scale):
                    found.append(op)
    return np.array(found)


def _canonical_fingerprint(atoms: Atoms, tolerance: float, canonical: bool) -> str:
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    digest = hashlib.sha256()
    if len(atoms) == 0:
        return hashlib.sha256(b"empty").hexdigest()[:32]
    if not fully_periodic(atoms):
        canon = canonicalize(atoms)
        pbc = np.asarray(canon.pbc, dtype=bool)
        coords = canon.positions.copy()
        if pbc.any():
            # periodic directions of a slab/wire: origin on the first atom of the rarest species
            frac = canon.cell.scaled_positions(canon.positions)
            lengths = np.maximum(canon.cell.lengths(), 1e-9)
            per_axis = np.maximum(np.rint(lengths / tolerance), 1).astype(np.int64)
            species, counts = np.unique(numbers, return_counts=True)
            rare = species[np.argmin(counts)]
            best = None
            for origin in np.flatnonzero(canon.numbers == rare):
                grid = np.rint((frac - frac[origin]) * per_axis).astype(np.int64)
                grid[:, pbc] %= per_axis[pbc]
                order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], canon.numbers))
                blob = canon.numbers[order].tobytes() + grid[order].tobytes()
                best = blob if best is None or blob < best else best
            digest.update(b"slab" + pbc.tobytes())
            digest.update(np.rint(canon.cell.array / tolerance).astype(np.int64).tobytes())
            digest.update(best)
        else:
            grid = np.rint(coords / tolerance).astype(np.int64)
            order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], canon.numbers))
            digest.update(b"mol" + canon.numbers[order].tobytes() + grid[order].tobytes())
        return digest.hexdigest()[:32]

    cell, frac = reduced_cell(atoms, assume_reduced=canonical)
    metric = cell @ cell.T
    lengths = np.sqrt(np.diag(metric))
    metric_key = tuple(np.round(metric / (tolerance * max(lengths.max(), 1.0)), 0).astype(np.int64).ravel())
    ops = _automorphisms(tuple((np.array(metric_key, dtype=float) * tolerance * max(lengths.max(), 1.0)).ravel()),
                         max(tolerance, 1e-6) * 10)
    species, counts = np.unique(numbers, return_counts=True)
    rare = species[np.argmin(counts)]  # ties: smallest atomic number
    origins = np.flatnonzero(numbers == rare)
    grid_per_axis = np.maximum(np.rint(lengths / tolerance), 1).astype(np.int64)
    best = None
    for op in ops:
        # old basis rows A, new rows U A; fractional coordinates f_new = f_old U^-1; all origins at once
        f_new = frac @ np.linalg.inv(op)
        shifted = f_new[None, :, :] - f_new[origins, None, :]                  # (origins, atoms, 3)
        grids = np.rint(shifted * grid_per_axis).astype(np.int64) % grid_per_axis
        species_key = np.broadcast_to(numbers, grids.shape[:2])
        order = np.lexsort((grids[..., 2], grids[..., 1], grids[..., 0], species_key), axis=-1)
        ordered = np.take_along_axis(grids, order[..., None], axis=1)
        blob = min(row.tobytes() for row in ordered)
        if best is None or blob < best:
            best = blob
    sorted_numbers = np.sort(numbers)
    digest.update(b"bulk")
    digest.update(np.asarray(metric_key, dtype=np.int64).tobytes())
    digest.update(sorted_numbers.tobytes())
    digest.update(best)
    return digest.hexdigest()[:32]


def _as_given_fingerprint(atoms: Atoms, tolerance: float) -> str:
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
