"""Validators: reasons to reject an action's structure before it is quenched (the step is then
resampled from the same state).

`min_dist` is pure geometry and runs before the model is asked for anything; `quality` needs the
model's forces on the new structure (force_pre) and the largest displacement the action caused.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from mlip_autopipec.sampling.config import MinDistValidator, QualityValidator


def closest_contact(atoms: Atoms, settings: MinDistValidator) -> tuple[float, float, int, int] | None:
    """(distance, allowed minimum, i, j) of the worst pair closer than allowed, or None."""
    if len(atoms) < 2:
        return None
    radii = covalent_radii[atoms.numbers]
    reach = max(settings.hard_min, settings.min_factor * 2 * radii.max()) + 1e-9
    first, second, dist = neighbor_list("ijd", atoms, reach, self_interaction=False)
    if len(dist) == 0:
        return None
    allowed = np.maximum(settings.hard_min, settings.min_factor * (radii[first] + radii[second]))
    short = dist < allowed
    if not short.any():
        return None
    worst = np.flatnonzero(short)[np.argmin((dist / allowed)[short])]
    return float(dist[worst]), float(allowed[worst]), int(first[worst]), int(second[worst])


def check_min_dist(atoms: Atoms, settings: MinDistValidator) -> str | None:
    contact = closest_contact(atoms, settings)
    if contact is None:
        return None
    dist, allowed, i, j = contact
    return f"min_dist: atoms {i} and {j} at {dist:.3f} Å < {allowed:.3f} Å"


def quality_score(max_force: float, max_displacement: float) -> float:
    """Force response per Å moved (eV/Å²): a large move that the model barely feels scores low."""
    return max_force / max(max_displacement, 1e-6)


def check_quality(max_force: float, max_displacement: float, settings: QualityValidator) -> str | None:
    if settings.max_force is not None and max_force > settings.max_force:
        return f"quality: max force {max_force:.3g} eV/Å > max_force {settings.max_force}"
    if settings.min_force is not None and max_force < settings.min_force:
        return f"quality: max force {max_force:.3g} eV/Å < min_force {settings.min_force}"
    if settings.score_threshold is not None:
        score = quality_score(max_force, max_displacement)
        if score < settings.score_threshold:
            return f"quality: score {score:.3g} eV/Å² < score_threshold {settings.score_threshold}"
    return None


def reason_code(reason: str) -> str:
    """The validator part of a rejection message (`min_dist`, `quality`, ...), for counting."""
    return reason.split(":", 1)[0]
