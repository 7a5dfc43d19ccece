"""Near duplicates by the structure-matching criterion: every atom within the tolerance.

Two structures A and B are near duplicates within `tolerance` (Å) when there is

- an equivalent cell: an integer basis change U of B's lattice whose vectors each lie within
  `tolerance` of A's, as given or after the proper rotation that brings them closest (Kabsch)
  (fully periodic structures; a slab or wire keeps its cell, a molecule has none),
- a translation, and
- a permutation that maps every atom onto an atom of the same species

such that **every atom** of B lies within `tolerance` of its partner in A, measured in the average
of the two cells (minimum image along periodic directions). That is the definition pymatgen's
`StructureMatcher` and similar tools use, with an absolute tolerance in Å. Rotations of a
non-periodic structure are not tried: a rotated molecule counts as distinct (it is submitted, never
wrongly skipped).

`find_match` searches translations anchored on an atom of the rarest species (2 x tolerance, the
most an anchored translation can add), finds the partners by an assignment per species, then moves
the translation to the centre of the displacements and confirms the match at `tolerance` itself.
Every match it returns is a proof (U, translation, permutation, largest displacement); a pair it
does not find may in rare borderline cases still be within the tolerance, in which case both are
submitted: it never skips a distinct structure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from scipy.optimize import linear_sum_assignment

from mlip_autopipec.store.fingerprint import BASIS_ROWS, fully_periodic, reduced_cell

_UNMATCHED = 1e6  # assignment cost of a pair farther apart than allowed


@dataclass(frozen=True)
class Match:
    basis_change: np.ndarray  # U: B's cell rows become U @ cell (identity when not fully periodic)
    cell: np.ndarray          # B's cell in that basis as compared with A's (turned when rotated)
    translation: np.ndarray   # fractional (periodic) or Cartesian (molecule), added to B
    permutation: np.ndarray   # permutation[i] = the atom of B that is atom i of A's partner
    max_displacement: float   # Å, the largest distance between partners


def find_match(a: Atoms, b: Atoms, tolerance: float) -> Match | None:
    """The proof that `b` is a near duplicate of `a` within `tolerance` Å (see the module), or None."""
    if len(a) != len(b) or not np.array_equal(np.sort(a.numbers), np.sort(b.numbers)):
        return None
    if not np.array_equal(np.asarray(a.pbc, bool), np.asarray(b.pbc, bool)):
        return None
    if len(a) == 0:
        return Match(np.eye(3), b.cell.array.copy(), np.zeros(3), np.zeros(0, int), 0.0)
    if fully_periodic(a) and fully_periodic(b):
        return _periodic_match(a, b, tolerance)
    return _partly_periodic_match(a, b, tolerance)


def _aligned(cell: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`cell` turned by the proper rotation that brings its vectors closest to `target`'s (Kabsch)."""
    u, _, vt = np.linalg.svd(cell.T @ target)
    turn = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return cell @ turn


def _equivalent_cells(target: np.ndarray, cell: np.ndarray, tolerance: float):
    """Yield (U, U @ cell as compared) whose vectors each lie within `tolerance` of `target`'s: as
    given (snapshots of one run share a frame) or after the best proper rotation (a rotated copy).

    Both cells are Niggli-reduced, so U has entries in {-1, 0, 1}; rows are pruned by length first.
    """
    candidates = BASIS_ROWS @ cell
    lengths = np.linalg.norm(candidates, axis=1)
    target_lengths = np.linalg.norm(target, axis=1)
    choices = [np.flatnonzero(np.abs(lengths - target_lengths[i]) <= tolerance) for i in range(3)]
    identity = [int(np.flatnonzero(np.all(BASIS_ROWS == row, axis=1))[0]) for row in np.eye(3)]
    combos = itertools.product(*choices)
    if all(identity[i] in choices[i] for i in range(3)):  # the same basis first: the usual case
        combos = itertools.chain([tuple(identity)], (c for c in combos if list(c) != identity))
    for rows in combos:
        change = BASIS_ROWS[list(rows)]
        if abs(abs(np.linalg.det(change)) - 1) > 1e-6:
            continue
        for compared in (change @ cell, _aligned(change @ cell, target)):
            if np.all(np.linalg.norm(compared - target, axis=1) <= tolerance):
                yield change, compared
                break


def _periodic_match(a: Atoms, b: Atoms, tolerance: float) -> Match | None:
    cell_a, frac_a = reduced_cell(a)
    cell_b, frac_b = reduced_cell(b)
    for change, compared in _equivalent_cells(cell_a, cell_b, tolerance):
        frame = (cell_a + compared) / 2
        coords_b = frac_b @ np.linalg.inv(change)
        found = _match_coordinates(a.numbers, frac_a, b.numbers, coords_b, frame, np.ones(3, bool), tolerance)
        if found is not None:
            return Match(change, compared, *found)
    return None


def _partly_periodic_match(a: Atoms, b: Atoms, tolerance: float) -> Match | None:
    pbc = np.asarray(a.pbc, bool)
    cell_a, cell_b = a.cell.array, b.cell.array
    if pbc.any():
        # a slab or wire: the cells must agree as given (no basis change along the vacuum direction)
        if (np.any(np.linalg.norm(cell_a - cell_b, axis=1) > tolerance)
                or min(abs(np.linalg.det(cell_a)), abs(np.linalg.det(cell_b))) < 1e-9):
            return None
        frame = (cell_a + cell_b) / 2
        coords_a = np.linalg.solve(cell_a.T, a.positions.T).T  # fractional, not wrapped
        coords_b = np.linalg.solve(cell_b.T, b.positions.T).T
    else:
        frame, coords_a, coords_b = np.eye(3), a.positions, b.positions
    found = _match_coordinates(a.numbers, coords_a, b.numbers, coords_b, frame, pbc, tolerance)
    return None if found is None else Match(np.eye(3), cell_b.copy(), *found)


def _match_coordinates(numbers_a, coords_a, numbers_b, coords_b, frame, periodic, tolerance):
    """(translation, permutation, max displacement) with every atom within `tolerance`, or None.

    Coordinates are in the basis `frame` (rows: Cartesian vectors); differences are wrapped along
    the `periodic` axes.
    """
    numbers_a, numbers_b = np.asarray(numbers_a), np.asarray(numbers_b)
    species, counts = np.unique(numbers_a, return_counts=True)
    rare = species[np.argmin(counts)]
    blocks = [(np.flatnonzero(numbers_a == z), np.flatnonzero(numbers_b == z)) for z in species]
    anchor_b = coords_b[np.flatnonzero(numbers_b == rare)[0]]

    def displacements(translation, rows, cols):
        """(len(rows), len(cols), 3) Cartesian vectors from the B atoms (rows) to the A atoms (cols)."""
        diff = coords_a[cols][None, :, :] - (coords_b[rows][:, None, :] + translation)
        diff[..., periodic] -= np.rint(diff[..., periodic])
        return diff @ frame

    def assign(translation, limit):
        """Per species, the assignment minimising squared displacement; None if any exceeds `limit`."""
        permutation = np.empty(len(numbers_a), int)
        vectors = np.empty((len(numbers_a), 3))
        for cols, rows in blocks:
            vec = displacements(translation, rows, cols)
            cost = np.einsum("ijk,ijk->ij", vec, vec)
            if np.any(np.sqrt(cost.min(axis=1)) > limit):
                return None
            cost = np.where(cost <= limit * limit, cost, _UNMATCHED)
            r, c = linear_sum_assignment(cost)
            if np.any(cost[r, c] >= _UNMATCHED):
                return None
            permutation[cols[c]] = rows[r]
            vectors[cols[c]] = vec[r, c]
        return permutation, vectors

    for anchor_a in coords_a[numbers_a == rare]:
        anchored = anchor_a - anchor_b
        first = assign(anchored, 2 * tolerance)
        if first is None:
            continue
        # the translation that minimises the largest displacement: centre of the displacement vectors
        centre = _enclosing_centre(first[1])
        translation = anchored + centre @ np.linalg.inv(frame)
        second = assign(translation, tolerance)
        if second is not None:
            worst = float(np.max(np.linalg.norm(second[1], axis=1)))
            return translation, second[0], worst
    return None


def _enclosing_centre(points: np.ndarray, iterations: int = 32) -> np.ndarray:
    """Approximately the centre of the smallest ball around `points`: the best of the mean, the
    bounding box's centre and Bădoiu-Clarkson steps from it."""
    def radius(centre):
        return np.max(np.einsum("ij,ij->i", points - centre, points - centre))

    box = (points.min(axis=0) + points.max(axis=0)) / 2
    walked = box
    for step in range(1, iterations + 1):
        farthest = points[np.argmax(np.einsum("ij,ij->i", points - walked, points - walked))]
        walked = walked + (farthest - walked) / (step + 1)
    return min((points.mean(axis=0), box, walked), key=radius)
