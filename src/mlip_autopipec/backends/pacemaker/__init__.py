"""The Pacemaker (ACE) backend: input.yaml from a PacemakerConfig, the real CLI in a subprocess,
.yaml/.yace/.asi per generation, metrics from pacemaker's own tables, gamma-aware ASE calculators."""

from mlip_autopipec.backends.pacemaker.calculator import BaselinePlusACECalculator, make_calculator
from mlip_autopipec.backends.pacemaker.trainer import PacemakerTrainer

__all__ = ["BaselinePlusACECalculator", "PacemakerTrainer", "make_calculator"]
