"""Near-duplicate descriptor: sorted nearest-neighbour distances, compared in the Chebyshev norm.

For every atom the K smallest neighbour distances (periodic images included, capped at a cutoff)
are taken; for each species and each rank k the values over that species' atoms are sorted. Every
entry is an order statistic of distances, so moving each atom by at most d changes every entry by at
most 2 d: the Chebyshev (max-abs) distance between two descriptors is a bound that does not depend
on atom order, translation, wrapping or the choice of cell. Two candidates of the same composition
whose descriptors differ by at most `tolerance` (Å) are near-duplicates.

The descriptor's per-(species, rank) mean is a short summary whose Chebyshev distance never exceeds
the full one, so a KD-tree over summaries finds every possible pair (no false negatives) in about
linear time; pairs are then confirmed on the full descriptor.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

DEFAULT_NEIGHBOURS = 8


def composition_key(atoms: Atoms) -> str:
    species, counts = np.unique(atoms.numbers, return_counts=True)
    return ",".join(f"{z}:{c}" for z, c in zip(species, counts))


def descriptor(atoms: Atoms, neighbours: int = DEFAULT_NEIGHBOURS, cutoff: float | None = None) -> np.ndarray:
    n = len(atoms)
    numbers = np.asarray(atoms.numbers)
    if n == 0:
        return np.zeros(0)
    if cutoff is None:
        if np.all(atoms.pbc) and atoms.cell.volume > 1e-9:
            density_length = (atoms.cell.volume / n) ** (1 / 3)
        else:
            density_length = 2.5
        cutoff = max(2.0 * density_length, 1.0)
    table = _nearest_distances(atoms, neighbours, cutoff)
    parts = []
    for z in np.unique(numbers):
        block = np.sort(table[numbers == z], axis=0)  # each rank column sorted over this species
        parts.append(block.T.ravel())
    return np.concatenate(parts)


def summary(desc: np.ndarray, atoms: Atoms, neighbours: int = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """Per-(species, rank) mean: Chebyshev-1-Lipschitz image of the full descriptor."""
    out = []
    offset = 0
    for z, count in zip(*np.unique(atoms.numbers, return_counts=True)):
        block = desc[offset: offset + count * neighbours].reshape(neighbours, count)
        out.append(block.mean(axis=1))
        offset += count * neighbours
    return np.concatenate(out) if out else np.zeros(0)


def near_pairs(summaries: list[np.ndarray], descriptors: list[np.ndarray], keys: list[str],
               tolerance: float) -> list[tuple[int, int]]:
    """All index pairs (i < j) of equal composition whose full descriptors are within tolerance."""
    groups: dict[tuple[str, int], list[int]] = {}
    for index, (key, summ) in enumerate(zip(keys, summaries)):
        groups.setdefault((key, len(summ)), []).append(index)
    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        data = np.stack([summaries[m] for m in members])
        tree = cKDTree(data)
        found = tree.query_pairs(tolerance, p=np.inf, output_type="ndarray")
        if not len(found):
            continue
        index = np.asarray(members)
        full = np.stack([descriptors[m] for m in members])
        for chunk in range(0, len(found), 65536):  # confirm on the full descriptor, vectorised
            a, b = found[chunk:chunk + 65536].T
            close = np.max(np.abs(full[a] - full[b]), axis=1) <= tolerance
            i, j = index[a[close]], index[b[close]]
            pairs.extend(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist()))
    return pairs


def _nearest_distances(atoms: Atoms, neighbours: int, cutoff: float) -> np.ndarray:
    """(n, neighbours): each atom's smallest neighbour distances, periodic images included, capped."""
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
        squared = squared.reshape(n, -1)
    else:
        vectors = positions[None, :, :] - positions[:, None, :]
        squared = np.einsum("ijk,ijk->ij", vectors, vectors)
        squared[np.arange(n), np.arange(n)] = np.inf
    # select on squared distances; the root and the cap only for the k kept per atom
    table = np.full((n, neighbours), cutoff)
    k = min(neighbours, squared.shape[1])
    if k:
        part = np.partition(squared, k - 1, axis=1)[:, :k] if k < squared.shape[1] else squared
        nearest = np.sqrt(np.maximum(np.sort(part, axis=1)[:, :k], 0.0))
        table[:, :k] = np.minimum(nearest, cutoff)
    return table
