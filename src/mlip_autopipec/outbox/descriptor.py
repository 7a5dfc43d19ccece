"""Near-duplicate prefilter: species-resolved sorted neighbour distances, in the Chebyshev norm.

For every atom and every species, the K smallest distances to neighbours of that species
(periodic images included, capped at a cutoff that depends on the composition only) are taken;
for each (centre species, neighbour species, rank k) the values over the centre species' atoms are
sorted. Every entry is an order statistic of distances, so moving each atom by at most d changes
every entry by at most 2 d, whatever the atom order, translation, wrapping or choice of cell; cell
vectors that differ by at most d add at most about d x sum_k(cutoff / height_k)
(`prefilter_threshold`).

This is a prefilter only: two candidates whose descriptors are within `prefilter_threshold` *may*
be near duplicates, and the outbox confirms each such pair with `match.find_match` (every atom
within the tolerance) before it skips anything. Equal descriptors do not mean equal structures:
order statistics hardly move when one atom of many moves.

Any subset of entries is at most as far apart as the whole descriptor, so a KD-tree over the
`KD_COORDINATES` entries that vary most in the pool finds every possible pair (no false negatives)
in about linear time; the pairs are then checked on the full descriptor.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from scipy.spatial import cKDTree

from mlip_autopipec.store.fingerprint import reduced_cell

DEFAULT_NEIGHBOURS = 8
KD_COORDINATES = 24
CUTOFF_PER_RADIUS = 2.5  # cutoff = 2.5 x the largest covalent radius: first neighbours of every species


def composition_key(atoms: Atoms) -> str:
    species, counts = np.unique(atoms.numbers, return_counts=True)
    return ",".join(f"{z}:{c}" for z, c in zip(species, counts))


def composition_cutoff(numbers: np.ndarray, per_radius: float = CUTOFF_PER_RADIUS) -> float:
    """A cutoff that depends on the composition only, so equal compositions share it."""
    return max(per_radius * float(np.max(covalent_radii[np.unique(numbers)])), 1.0) if len(numbers) else 1.0


def descriptor(atoms: Atoms, neighbours: int = DEFAULT_NEIGHBOURS, cutoff_per_radius: float = CUTOFF_PER_RADIUS
               ) -> np.ndarray:
    """Sorted (centre species, neighbour species, rank) distance table, flattened."""
    numbers = np.asarray(atoms.numbers)
    if len(atoms) == 0:
        return np.zeros(0)
    cutoff = composition_cutoff(numbers, cutoff_per_radius)
    species = np.unique(numbers)
    squared = _squared_distances(atoms, cutoff)
    squared = squared.reshape(len(numbers), len(numbers), -1)
    centres = [numbers == z for z in species]
    blocks: dict[tuple[int, int], np.ndarray] = {}
    for j, other in enumerate(species):
        nearest = _smallest(squared[:, numbers == other, :].reshape(len(numbers), -1), neighbours, cutoff)
        for i, rows in enumerate(centres):
            blocks[i, j] = np.sort(nearest[rows], axis=0).T.ravel()  # each rank column sorted over the centres
    return np.concatenate([blocks[i, j] for i in range(len(species)) for j in range(len(species))])


def prefilter_threshold(atoms: Atoms, tolerance: float, assume_reduced: bool = False) -> float:
    """How far apart (Chebyshev, Å) the descriptors of two near duplicates within `tolerance` can be:
    2 x tolerance for the atoms, plus tolerance x sum_k(reach / height_k) of the Niggli cell for
    cell vectors that may differ by the tolerance too (reach: the cutoff and what a pair can gain)."""
    pbc = np.asarray(atoms.pbc, bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not pbc.any() or abs(np.linalg.det(cell)) < 1e-9:
        return 2.0 * tolerance
    if pbc.all() and not assume_reduced:
        cell = reduced_cell(atoms)[0]
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = composition_cutoff(atoms.numbers) + 4.0 * tolerance
    return tolerance * (2.0 + float(np.sum(reach / heights[pbc])))


def near_pairs(descriptors: list[np.ndarray], keys: list[str], thresholds: list[float]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of equal composition whose descriptors lie within the larger of their two
    thresholds (Chebyshev): every pair that can be a near duplicate, and some more."""
    groups: dict[tuple[str, int], list[int]] = {}
    for index, (key, desc) in enumerate(zip(keys, descriptors)):
        groups.setdefault((key, len(desc)), []).append(index)
    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        index = np.asarray(members)
        limits = np.asarray([thresholds[m] for m in members])
        full = np.stack([descriptors[m] for m in members])
        # any subset of entries is as close as the whole: a KD-tree over the most varied ones
        columns = np.argsort(full.var(axis=0))[::-1][:KD_COORDINATES]
        found = cKDTree(full[:, columns]).query_pairs(float(limits.max()), p=np.inf, output_type="ndarray")
        for chunk in range(0, len(found), 65536):  # confirm on the full descriptor, vectorised
            a, b = found[chunk:chunk + 65536].T
            close = np.max(np.abs(full[a] - full[b]), axis=1) <= np.maximum(limits[a], limits[b])
            i, j = index[a[close]], index[b[close]]
            pairs.extend(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist()))
    return pairs


def _squared_distances(atoms: Atoms, cutoff: float) -> np.ndarray:
    """(n, n * images) squared distances from each atom to each atom's periodic images within reach
    (column j * images + s: atom j in image s); an atom's own zero distance is infinite."""
    n = len(atoms)
    positions = np.asarray(atoms.positions, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    if pbc.any() and abs(np.linalg.det(cell)) > 1e-12:
        frac = np.linalg.solve(cell.T, positions.T).T
        diff = frac[None, :, :] - frac[:, None, :]               # (n, n, 3), j - i
        diff[..., pbc] -= np.rint(diff[..., pbc])                  # to [-0.5, 0.5]
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.where(pbc, np.floor(cutoff / heights + 0.5), 0).astype(int)
        shifts = np.array(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")).reshape(3, -1).T
        # |d + t|^2 = |d|^2 + 2 d.t + |t|^2 with Cartesian d (pairs) and t (image shifts)
        d_cart = (diff @ cell).reshape(-1, 3)
        t_cart = shifts @ cell
        squared = ((d_cart * d_cart).sum(1)[:, None] + 2.0 * d_cart @ t_cart.T
                   + (t_cart * t_cart).sum(1)[None, :])
        squared = squared.reshape(n, n, len(shifts))
        zero = np.flatnonzero(np.all(shifts == 0, axis=1))[0]
        squared[np.arange(n), np.arange(n), zero] = np.inf
        return squared.reshape(n, -1)
    vectors = positions[None, :, :] - positions[:, None, :]
    squared = np.einsum("ijk,ijk->ij", vectors, vectors)
    squared[np.arange(n), np.arange(n)] = np.inf
    return squared


def _smallest(squared: np.ndarray, neighbours: int, cutoff: float) -> np.ndarray:
    """(rows, neighbours): the smallest distances of each row, capped at `cutoff` (and padded with it)."""
    table = np.full((squared.shape[0], neighbours), cutoff)
    k = min(neighbours, squared.shape[1])
    if k:
        # select on squared distances; the root and the cap only for the k kept per row
        part = np.partition(squared, k - 1, axis=1)[:, :k] if k < squared.shape[1] else squared
        nearest = np.sqrt(np.maximum(np.sort(part, axis=1)[:, :k], 0.0))
        table[:, :k] = np.minimum(nearest, cutoff)
    return table
