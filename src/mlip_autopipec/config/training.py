"""Training configuration: what a user writes under `training:` in run.yaml. The schemas live next
to their backends (backends/*/config.py, one union in backends/configs.py); this module keeps the
import path."""

from mlip_autopipec.backends.base import BaseTrainingConfig
from mlip_autopipec.backends.configs import TrainingConfig, parse_training_config
from mlip_autopipec.backends.pacemaker.config import (
    ActiveSetConfig,
    EarlyStoppingConfig,
    EmbeddingConfig,
    EnergyBasedWeighting,
    LossConfig,
    PacemakerConfig,
    RadialConfig,
)

__all__ = ["ActiveSetConfig", "BaseTrainingConfig", "EarlyStoppingConfig", "EmbeddingConfig", "EnergyBasedWeighting",
           "LossConfig", "PacemakerConfig", "RadialConfig", "TrainingConfig", "parse_training_config"]
