"""Trigger: which structures become DFT candidates.

Force rules look at the movable atoms only (fixed atoms of a slab carry forces DFT is not asked
about); γ, the extrapolation grade of an ACE potential with an active set, at every atom.
"""

from __future__ import annotations

import numpy as np

from mlip_autopipec.sampling.config import Trigger


def force_stats(forces: np.ndarray | None, movable: np.ndarray, top_k: int) -> dict:
    """max and top-K-mean atomic force (eV/Å) over the movable atoms."""
    if forces is None:
        return {}
    norms = np.linalg.norm(np.asarray(forces)[movable], axis=1)
    if norms.size == 0:
        return {"max": 0.0, "top_k_mean": 0.0}
    top = np.sort(norms)[::-1][:top_k]
    return {"max": float(norms.max()), "top_k_mean": float(top.mean())}


def fired_rules(trigger: Trigger, forces: dict, max_gamma: float | None) -> list[str]:
    """Names of the rules that fired: `max_force`, `top_k_force`, `gamma`."""
    fired = []
    if trigger.max_force is not None and forces and forces["max"] > trigger.max_force:
        fired.append("max_force")
    if trigger.top_k_force is not None and forces and forces["top_k_mean"] > trigger.top_k_force:
        fired.append("top_k_force")
    if trigger.gamma is not None and max_gamma is not None and max_gamma > trigger.gamma:
        fired.append("gamma")
    return fired
