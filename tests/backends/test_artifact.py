"""The backend-independent pieces: artifact on disk, trainer registry, Trainer protocol."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mlip_autopipec.backends import PotentialArtifact, Trainer, TrainingTimeout, get_trainer
from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.files import sha256_file


def _artifact(directory) -> PotentialArtifact:
    (directory / "potential.yaml").write_text("elements: [Cu]\n")
    return PotentialArtifact(
        backend="pacemaker", elements=["Cu"], files={"potential_yaml": "potential.yaml"},
        digests={"potential_yaml": sha256_file(directory / "potential.yaml")}, metrics={"train_loss": 0.5},
        version="pacemaker 0.4.0rc1", dataset_digest="d" * 64, config_digest="c" * 64,
        baseline=CalculatorSpec(factory="emt"),
    )


def test_artifact_round_trips_and_resolves_paths_where_it_was_loaded(tmp_path):
    original = _artifact(tmp_path)
    original.save(tmp_path)
    moved = tmp_path / "moved"  # paths are relative: a copied generation works where it lands
    moved.mkdir()
    for name in ("artifact.json", "potential.yaml"):
        (moved / name).write_bytes((tmp_path / name).read_bytes())
    loaded = PotentialArtifact.load(moved)
    assert loaded.model_dump(exclude={"generation_dir"}) == original.model_dump(exclude={"generation_dir"})
    assert loaded.path("potential_yaml") == moved / "potential.yaml"
    assert loaded.digest == original.digest
    loaded.verify()


def test_verify_detects_a_changed_or_missing_file(tmp_path):
    artifact = _artifact(tmp_path)
    artifact.save(tmp_path)
    (tmp_path / "potential.yaml").write_text("elements: [Ni]\n")
    with pytest.raises(ValueError, match="changed after training"):
        artifact.verify()
    (tmp_path / "potential.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        artifact.verify()


def test_unknown_role_names_the_roles_there_are(tmp_path):
    with pytest.raises(KeyError, match="potential_yaml"):
        _artifact(tmp_path).path("active_set")


def test_registry_gives_a_trainer_and_rejects_unknown_backends():
    trainer = get_trainer("pacemaker")
    assert isinstance(trainer, Trainer) and trainer.name == "pacemaker"
    with pytest.raises(ValueError, match="unknown training backend 'nequip'"):
        get_trainer("nequip")


def test_training_errors_keep_their_log_through_pickling():
    error = TrainingTimeout("pacemaker exceeded its time limit", "last line", Path("/runs/gen-001/pacemaker.log"))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TrainingTimeout and str(copy) == str(error)
    assert (copy.log_tail, copy.log_path) == ("last line", Path("/runs/gen-001/pacemaker.log"))
