"""Fixtures for the MACE backend: a tiny model config and one real `mace_run_train` training shared
by every test that needs a trained model (the dataset is in ../conftest.py, the fakes in ../fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


def _tiny_mace_config(**overrides):
    """8 channels, L=0, correlation 2, r_max 4 A: a 2-epoch training takes ~15 s on 2 cores."""
    from mlip_autopipec.config.mace import MaceConfig

    settings = dict(num_channels=8, max_L=0, correlation=2, r_max=4.0, radial_MLP=[16, 16],
                    epochs=2, batch_size=4, valid_fraction=0.2, seed=1, device="cpu", timeout_seconds=240)
    return MaceConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_mace_config():
    """Builds the tiny test config; keyword arguments override its settings."""
    return _tiny_mace_config


@dataclass
class TrainedMace:
    artifact: object  # PotentialArtifact
    config: object  # MaceConfig
    progress: list

    @property
    def directory(self) -> Path:
        return self.artifact.generation_dir


@pytest.fixture(scope="session")
def mace_generation(mace_manifest, tmp_path_factory) -> TrainedMace:
    from mlip_autopipec.backends.mace import MaceTrainer

    config = _tiny_mace_config()
    events: list = []
    artifact = MaceTrainer().train(mace_manifest, config, tmp_path_factory.mktemp("mace-campaign") / "gen-001",
                                   progress=events.append)
    return TrainedMace(artifact, config, events)
