"""One real Pacemaker fit shared by every test here: a tiny ACE basis on 24 Cu structures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mlip_autopipec.backends import PotentialArtifact, TrainingProgress
from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.config.training import PacemakerConfig


def _tiny_config(**overrides) -> PacemakerConfig:
    """10 functions, up to 4-body: about 15 s on 2 cores, most of it TensorFlow starting up."""
    settings = dict(number_of_functions_per_element=10, nradmax_by_orders=[5, 2, 1],
                    lmax_by_orders=[0, 2, 1], maxiter=25, display_step=5, timeout_seconds=300)
    return PacemakerConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_config():
    """Builds the tiny test config; keyword arguments override its settings."""
    return _tiny_config


@dataclass
class TrainedGeneration:
    artifact: PotentialArtifact
    config: PacemakerConfig
    progress: list[TrainingProgress]

    @property
    def directory(self) -> Path:
        return self.artifact.generation_dir


@pytest.fixture(scope="session")
def generation_1(cu_manifest, tiny_config, tmp_path_factory) -> TrainedGeneration:
    config = tiny_config()
    events: list[TrainingProgress] = []
    artifact = PacemakerTrainer().train(cu_manifest, config, tmp_path_factory.mktemp("campaign") / "gen-001",
                                        progress=events.append)
    return TrainedGeneration(artifact, config, events)
