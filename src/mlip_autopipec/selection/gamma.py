"""Select structures for labelling from explored frames and the potential's extrapolation grade γ.

Candidates are frames whose max γ lies in [lower, upper): below `lower` the potential already
knows the environment; above `upper` the structure is usually unphysical. Among candidates,
D-optimality (MaxVol over ACE B-projections, as `pace_select` does) picks the set that most
enlarges the active set, rather than the most extrapolative frames, which tend to be near-copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms


def gamma_candidates(max_gamma: Sequence[float], lower: float, upper: float | None) -> list[int]:
    """Indices of frames with lower <= max γ < upper."""
    values = np.asarray(max_gamma, dtype=float)
    mask = values >= lower
    if upper is not None:
        mask &= values < upper
    return [int(i) for i in np.flatnonzero(mask)]


def select_top_gamma(max_gamma: Sequence[float], count: int) -> list[int]:
    """The `count` frames with the highest max γ (the naive strategy, for comparison)."""
    order = np.argsort(-np.asarray(max_gamma, dtype=float), kind="stable")
    return [int(i) for i in order[:count]]


def select_d_optimal(frames: Sequence[Atoms], potential_yaml: str | Path, active_set: str | Path | None,
                     count: int, gamma_tolerance: float = 1.01, maxvol_iters: int = 300) -> list[int]:
    """Indices of at most `count` frames chosen by MaxVol on ACE B-projections.

    With the potential's active set given, only frames that extend it are chosen (they are ranked
    by how many of their atoms enter the new active set), which is what `pace_select -a` does.
    """
    if count <= 0 or not frames:
        return []
    import pandas as pd

    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    BBasisConfiguration = import_pyace().BBasisConfiguration
    select_structures_maxvol = import_pyace("pyace.aceselect").select_structures_maxvol
    activelearning = import_pyace("pyace.activelearning")
    compute_A_active_inverse = activelearning.compute_A_active_inverse
    load_active_inverse_set = activelearning.load_active_inverse_set

    extra = None
    if active_set is not None:
        extra = compute_A_active_inverse(load_active_inverse_set(str(active_set)))
    table = pd.DataFrame({"ase_atoms": list(frames)})
    selected = select_structures_maxvol(
        table, BBasisConfiguration(str(potential_yaml)), extra_A0_projections_dict=extra,
        batch_size_option="none", gamma_tolerance=gamma_tolerance, max_structures=count,
        maxvol_iters=maxvol_iters, maxvol_refinement=0,
    )
    return [int(i) for i in selected.index]
