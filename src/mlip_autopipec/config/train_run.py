"""The training flow's config file (`python -m flows.train --config FILE`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from mlip_autopipec.config.run_files import load_yaml_model
from mlip_autopipec.config.training import BaseTrainingConfig, PacemakerConfig, parse_training_config
from mlip_autopipec.data.export import ALL_FORMATS


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0


class TrainRunConfig(BaseModel):
    """campaign + export + training sections; every key is checked, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    campaign: str = "default"
    export: ExportSettings = Field(default_factory=ExportSettings)
    training: SerializeAsAny[BaseTrainingConfig] = Field(default_factory=PacemakerConfig)

    @field_validator("training", mode="before")
    @classmethod
    def _backend_specific(cls, value: Any) -> BaseTrainingConfig:
        return value if isinstance(value, BaseTrainingConfig) else parse_training_config(value or {})

    @property
    def export_formats(self) -> list[str]:
        # The training backend's format plus extxyz, which evaluation reads.
        return sorted({"extxyz", self.training.backend if self.training.backend in ALL_FORMATS else "extxyz"})

    @classmethod
    def load(cls, path: str | Path | None) -> TrainRunConfig:
        return cls() if path is None else load_yaml_model(path, cls)
