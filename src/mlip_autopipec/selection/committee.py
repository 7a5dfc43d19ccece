"""Select structures for labelling by committee disagreement, DP-GEN style.

Each explored frame carries the committee's max force deviation (`max_force_std`, eV/Angstrom:
max over atoms of sqrt(mean over models |F_i^m - <F_i>|^2), see backends.mace.calculator).
Against two trust levels a frame is

    accurate   max_force_std <  lower    the committee agrees: nothing to learn
    candidate  lower <= max_force_std < upper   worth a DFT label
    failed     max_force_std >= upper    usually unphysical (the walker left the data's domain)

DP-GEN's usual trust levels for metals are around 0.05-0.15 and 0.25-0.35 eV/Angstrom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrustLevels:
    lower: float
    upper: float | None = None

    def __post_init__(self):
        if self.lower < 0 or (self.upper is not None and self.upper <= self.lower):
            raise ValueError(f"trust levels need 0 <= lower < upper, got lower={self.lower}, upper={self.upper}")


def classify(max_force_std: Sequence[float], levels: TrustLevels) -> dict[str, list[int]]:
    """Frame indices per class: accurate, candidate, failed."""
    values = np.asarray(max_force_std, dtype=float)
    candidate = values >= levels.lower
    failed = np.zeros_like(candidate) if levels.upper is None else values >= levels.upper
    candidate &= ~failed
    return {
        "accurate": [int(i) for i in np.flatnonzero(~candidate & ~failed)],
        "candidate": [int(i) for i in np.flatnonzero(candidate)],
        "failed": [int(i) for i in np.flatnonzero(failed)],
    }


def select_candidates(max_force_std: Sequence[float], levels: TrustLevels, count: int | None = None) -> list[int]:
    """Candidate frames, most uncertain first, at most `count` of them."""
    values = np.asarray(max_force_std, dtype=float)
    candidates = classify(values, levels)["candidate"]
    ranked = sorted(candidates, key=lambda index: (-values[index], index))
    return ranked if count is None else ranked[:max(count, 0)]
