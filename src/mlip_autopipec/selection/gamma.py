"""Select structures for labelling from explored frames and the potential's extrapolation grade γ.

Candidates are frames whose max γ lies in [lower, upper): below `lower` the potential already
knows the environment; above `upper` the structure is usually unphysical. Among candidates,
D-optimality (MaxVol over ACE B-projections, as `pace_select` does) picks the set that most
enlarges the active set, rather than the most extrapolative frames, which tend to be near-copies.

A species without an active set yet (fewer training environments than B-functions: the artifact's
`species_without_gamma`) has no trustworthy γ: its atoms are treated as uncertain. A frame holding
such atoms is a candidate whatever its max γ (below `upper`), ranks before the others by top γ,
and in D-optimal selection every environment of that species counts as extending the active set
(it is under-determined, so each new environment does). The campaign therefore labels more of
that species, and the next generation builds its MaxVol active set once it has enough.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms


def frames_with_species(frames: Sequence[Atoms], species: Iterable[str]) -> list[bool]:
    """Per frame: does it hold an atom of one of `species` (e.g. those without an active set)?"""
    wanted = set(species)
    return [bool(wanted & set(atoms.get_chemical_symbols())) for atoms in frames]


def gamma_candidates(max_gamma: Sequence[float], lower: float, upper: float | None,
                     uncertain: Sequence[bool] | None = None) -> list[int]:
    """Indices of frames with lower <= max γ < upper; frames marked `uncertain` (atoms of a species
    without an active set) need only lie below `upper`."""
    values = np.asarray(max_gamma, dtype=float)
    mask = values >= lower
    if uncertain is not None:
        mask |= np.asarray(uncertain, dtype=bool)
    if upper is not None:
        mask &= values < upper
    return [int(i) for i in np.flatnonzero(mask)]


def select_top_gamma(max_gamma: Sequence[float], count: int, uncertain: Sequence[bool] | None = None) -> list[int]:
    """The `count` frames with the highest max γ (the naive strategy, for comparison); frames
    marked `uncertain` come first."""
    values = np.asarray(max_gamma, dtype=float)
    first = np.zeros(len(values), dtype=bool) if uncertain is None else np.asarray(uncertain, dtype=bool)
    order = np.lexsort((-values, ~first))  # the last key sorts first: uncertain frames, then by γ
    return [int(i) for i in order[:count]]


def select_d_optimal(frames: Sequence[Atoms], potential_yaml: str | Path, active_set: str | Path | None,
                     count: int, gamma_tolerance: float = 1.01, maxvol_iters: int = 300,
                     uncertain_species: Iterable[str] = ()) -> list[int]:
    """Indices of at most `count` frames chosen by MaxVol on ACE B-projections, species by species.

    With the potential's active set given, only frames that extend it are chosen (they are ranked
    by how many of their atoms enter the new active set), which is what `pace_select -a` does.
    Atoms of `uncertain_species`, and of a species whose environments (with the active set's) are
    fewer than its functions, all count as entering it."""
    if count <= 0 or not frames:
        return []
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    pyace = import_pyace()
    activelearning = import_pyace("pyace.activelearning")
    basis = pyace.ACEBBasisSet(pyace.BBasisConfiguration(str(potential_yaml)))
    functions = activelearning.compute_number_of_functions(basis)
    projections, structure_of = activelearning.compute_B_projections(basis, list(frames),
                                                                     return_structure_ind_dict=True)
    known = {}
    if active_set is not None:
        known = activelearning.compute_A_active_inverse(activelearning.load_active_inverse_set(str(active_set)))
    uncertain = set(uncertain_species)
    entering: Counter[int] = Counter()  # frame -> its atoms entering the active set
    uncertain_atoms: Counter[int] = Counter()  # frame -> its atoms of an uncertain species
    for element, index in basis.elements_to_index_map.items():
        rows, structures = projections[index], structure_of[index]
        if not len(rows):
            continue
        extra = None if element in uncertain else known.get(index)
        if element in uncertain or len(rows) + (0 if extra is None else len(extra)) < functions[index]:
            entering.update(int(i) for i in structures)  # under-determined: every environment is new
            if element in uncertain:
                uncertain_atoms.update(int(i) for i in structures)
            continue
        _, chosen = activelearning.compute_active_set(
            {index: rows}, {index: structures}, tol=gamma_tolerance, max_iters=maxvol_iters,
            extra_A0_projections_dict=None if extra is None else {index: extra})
        entering.update(int(i) for i in chosen[index] if i >= 0)  # -1: a row of the active set
    # Frames with the most atoms of an uncertain species first, then the most atoms entering.
    return sorted(entering, key=lambda i: (-uncertain_atoms[i], -entering[i], i))[:count]
