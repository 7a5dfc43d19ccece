"""Training backends, each a `Backend` (template.py); `get_trainer(name)` picks one by name.

Backends import their engine lazily, so importing this package never loads TensorFlow or torch.
"""

from __future__ import annotations

import importlib

from mlip_autopipec.backends.base import (
    BackendError,
    BackendNotFound,
    DatasetError,
    GenerationExistsError,
    PotentialArtifact,
    ProgressCallback,
    TrainingConfigError,
    TrainingError,
    TrainingProgress,
    TrainingTimeout,
)
from mlip_autopipec.backends.template import Backend, GenerationBusyError

Trainer = Backend  # what callers type against: every backend is one

# Backend name -> "module:class" of its Trainer.
TRAINERS = {
    "pacemaker": "mlip_autopipec.backends.pacemaker:PacemakerTrainer",
    "mace": "mlip_autopipec.backends.mace:MaceTrainer",
    "equiformer_v2": "mlip_autopipec.backends.fairchem:EquiformerV2Trainer",
    "gemnet_oc": "mlip_autopipec.backends.fairchem:GemNetOCTrainer",
}


def get_trainer(name: str, **options) -> Trainer:
    if name not in TRAINERS:
        raise ValueError(f"unknown training backend {name!r}; choose from {sorted(TRAINERS)}")
    module_name, class_name = TRAINERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)


__all__ = [
    "Backend", "BackendError", "BackendNotFound", "DatasetError", "GenerationBusyError", "GenerationExistsError",
    "PotentialArtifact", "ProgressCallback", "Trainer", "TrainingConfigError", "TrainingError", "TrainingProgress",
    "TrainingTimeout", "get_trainer",
]
