"""ASE calculators for a trained Pacemaker generation: PyACECalculator with `results["gamma"]` (the
per-atom extrapolation grade) once the active set is loaded, by `set_active_set` (the constructor's
active-set keyword is silently ignored); baseline + ACE for delta-learned potentials.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import BackendNotFound, PotentialArtifact
from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace
from mlip_autopipec.backends.potentials import BaselinePlusModel


class BaselinePlusACECalculator(BaselinePlusModel):
    """Baseline + the ACE potential fitted to the remainder."""

    @property
    def uncertainty_keys(self) -> tuple[str, ...]:
        # γ is only real with an active set: without one PyACECalculator reports gamma = 0 everywhere.
        return ("gamma",) if getattr(self.model, "is_active_set_configured", False) else ()


def make_calculator(artifact: PotentialArtifact, with_active_set: bool = True) -> Calculator:
    """PyACECalculator for the generation (baseline + ACE if delta-learned).

    Without the active set it is a little faster, and results["gamma"] is meaningless (zeros).
    """
    try:
        PyACECalculator = import_pyace().PyACECalculator
    except ImportError as exc:
        raise BackendNotFound(f"python-ace (import name pyace) is needed to evaluate {artifact.backend} "
                              f"potentials: {exc}") from exc
    # The B-basis .yaml (not the .yace) is what the gamma evaluation needs.
    ace = PyACECalculator(str(artifact.path("potential_yaml")))
    if with_active_set:
        ace.set_active_set(str(artifact.path("active_set")))
    if artifact.baseline is not None:
        return BaselinePlusACECalculator(artifact.baseline.build(), ace)
    return ace
