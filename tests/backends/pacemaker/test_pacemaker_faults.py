"""Pacemaker's own failures: a lying `pacemaker`, bad elements or basis (crashes, hangs, retries,
a missing install and bad data are the Trainer contract: tests/backends/test_trainer_contract.py).

A fake `pacemaker` (a shell script given as an explicit executable) stands in for the real one,
so these run in seconds; the real pace_yaml2yace and pace_activeset still run after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlip_autopipec.backends import DatasetError, PotentialArtifact, TrainingError
from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.config.training import PacemakerConfig


def fake_pacemaker(directory: Path, script: str) -> PacemakerTrainer:
    executable = directory / "pacemaker"
    executable.write_text("#!/bin/sh\n" + script)
    executable.chmod(0o755)
    return PacemakerTrainer(executables={"pacemaker": executable})


def test_exit_without_output_potential_is_an_error(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo 'Fitting done'\nexit 0\n")
    with pytest.raises(TrainingError, match="wrote no output_potential.yaml"):
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")


def test_garbage_output_potential_is_an_error(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo 'this is not an ACE potential' > output_potential.yaml\nexit 0\n")
    with pytest.raises(TrainingError, match="pace_yaml2yace failed with exit code .*could not convert"):
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")


def test_config_elements_that_miss_the_data_are_a_dataset_error(cu_manifest, tmp_path):
    with pytest.raises(DatasetError, match=r"contains \['Cu'\].*config does not cover"):
        PacemakerTrainer().train(cu_manifest, PacemakerConfig(elements=["Al"]), tmp_path / "gen-001")


def test_continuing_a_potential_without_the_data_elements_is_a_dataset_error(cu_manifest, tmp_path):
    aluminium = PotentialArtifact(backend="pacemaker", elements=["Al"], files={}, digests={}, version="test",
                                  dataset_digest="", config_digest="")
    with pytest.raises(DatasetError, match="initial potential does not cover"):
        PacemakerTrainer().train(cu_manifest, PacemakerConfig(), tmp_path / "gen-002",
                                 initial_potential=aluminium)


@pytest.mark.parametrize("elements, functions, enough", [(["Ni", "Cu", "Pd", "Ag", "Pt"], 15, 16),
                                                         (["C", "H", "O"], 3, 4)])
def test_a_basis_without_functions_is_refused_before_anything_runs(tmp_path, elements, functions, enough):
    """Pacemaker spreads the functions per element over every block; too few give 0 everywhere."""
    from mlip_autopipec.backends import TrainingConfigError
    from mlip_autopipec.backends.pacemaker.input_yaml import check_basis
    from tests.conftest import doped_cu_cells, export_for_training

    with pytest.raises(TrainingConfigError, match=f"number_of_functions_per_element: {functions} .* at least "
                                                  f"{enough} functions per element"):
        check_basis(PacemakerConfig(number_of_functions_per_element=functions), elements)
    check_basis(PacemakerConfig(number_of_functions_per_element=enough), elements)  # the advice works

    if len(elements) == 5:  # through the trainer: refused before the generation directory exists
        frames = doped_cu_cells(2, {"Ni": 4, "Pd": 4, "Ag": 4, "Pt": 4})
        manifest = export_for_training(frames, tmp_path / "data")
        with pytest.raises(TrainingConfigError):
            PacemakerTrainer().train(manifest, PacemakerConfig(number_of_functions_per_element=functions),
                                     tmp_path / "gen-000")
        assert not (tmp_path / "gen-000").exists()
