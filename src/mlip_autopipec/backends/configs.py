"""Every backend's training config as one discriminated union: `backend:` picks the class. Each
config lives next to its backend (backends/*/config.py); nothing registers itself on import."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field

from mlip_autopipec.backends.base import BaseTrainingConfig
from mlip_autopipec.backends.fairchem.config import FairChemConfig
from mlip_autopipec.backends.mace.config import MaceConfig
from mlip_autopipec.backends.pacemaker.config import PacemakerConfig

TrainingConfig = Annotated[PacemakerConfig | MaceConfig | FairChemConfig, Field(discriminator="backend")]
# backend name -> its config class, read off the union's `backend` literals
CONFIG_CLASSES: dict[str, type[BaseTrainingConfig]] = {
    name: member for member in get_args(get_args(TrainingConfig)[0])
    for name in get_args(member.model_fields["backend"].annotation)}


def parse_training_config(data: dict[str, Any]) -> BaseTrainingConfig:
    """The config class named by `data['backend']` (default pacemaker), validated; unknown keys raise
    (validated by that class itself, so an error's location has no union tag in it)."""
    backend = data.get("backend", "pacemaker")
    if backend not in CONFIG_CLASSES:
        raise ValueError(f"unknown training backend {backend!r}; choose from {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[backend].model_validate({**data, "backend": backend})
