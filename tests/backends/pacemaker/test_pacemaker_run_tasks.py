"""Unified run.yaml tasks with the Pacemaker backend, on real pacemaker fits of Cu-I: train with a
separate test file, finetune from a generation, resume from an interrupted fit's interim potential,
evaluate / infer / export on the session's trained generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml

from mlip_autopipec.backends.base import DatasetError, PotentialArtifact
from mlip_autopipec.backends.pacemaker.export import calculator_from_manifest
from mlip_autopipec.backends.run_yaml import run_task
from mlip_autopipec.config.run_yaml import load_run_spec
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.validation.errors import predict

TINY = {"number_of_functions_per_element": 8, "nradmax_by_orders": [4, 2], "lmax_by_orders": [0, 1],
        "display_step": 2, "timeout_seconds": 300}


def _spec(directory: Path, content: dict):
    path = directory / f"run-{content['task']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    return load_run_spec(path)


@pytest.fixture(scope="module")
def cu_files(shared_data, tmp_path_factory) -> dict[str, Path]:
    frames = ase.io.read(shared_data / "Cu-I.extxyz", ":")
    directory = tmp_path_factory.mktemp("cu-files")
    ase.io.write(directory / "train.extxyz", frames[:14])
    ase.io.write(directory / "test.extxyz", frames[14:20])
    (directory / "fit.json").write_text(json.dumps(TINY))
    return {"train": directory / "train.extxyz", "test": directory / "test.extxyz",
            "input_json": directory / "fit.json"}


def _training(cu_files, run_dir: Path, task: str, epochs: int, **extra) -> dict:
    return {"backend": "pacemaker", "task": task, "run_dir": str(run_dir), "device": "cpu",
            "data": {"train": str(cu_files["train"]), "test": str(cu_files["test"])},
            "train": {"input_json": str(cu_files["input_json"]), "epochs": epochs, "progress_bar": False},
            **extra}


@pytest.mark.slow
def test_train_uses_the_given_test_file_and_exports_a_loadable_potential(cu_files, tmp_path):
    events: list = []
    result = run_task(_spec(tmp_path, _training(cu_files, tmp_path / "run", "train", 4)), events.append)

    artifact = PotentialArtifact.load(result["artifact"])
    artifact.verify()
    data = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert data["counts"] == {"train": 14, "test": 6}  # the files as given, no re-split
    assert "test_forces_rmse_mev_per_angstrom" in artifact.metrics  # pacemaker saw the test file
    assert events and events[-1].fraction == 1.0

    # The export loads back into a calculator giving the generation's own predictions, γ included.
    exported = calculator_from_manifest(result["manifest"])
    original = PotentialArtifact.load(result["artifact"])
    frames = [f for _, f in read_labelled_frames(cu_files["test"]) if isinstance(f, LabelledFrame)]
    from mlip_autopipec.backends.pacemaker import make_calculator

    ours, theirs = predict(exported, frames), predict(make_calculator(original), frames)
    np.testing.assert_allclose(ours.energy_predicted, theirs.energy_predicted, rtol=0, atol=1e-9)
    assert ours.max_gamma is not None and np.all(ours.max_gamma > 0)


@pytest.mark.slow
def test_finetune_starts_from_the_given_generation(cu_files, generation_1, tmp_path):
    spec = _spec(tmp_path, _training(cu_files, tmp_path / "ft", "finetune", 2,
                                     model_in=str(generation_1.directory)))
    artifact = PotentialArtifact.load(run_task(spec)["artifact"])
    assert artifact.initial_potential == generation_1.artifact.digest
    assert (artifact.generation_dir / "initial_potential.yaml").read_bytes() == \
        generation_1.artifact.path("potential_yaml").read_bytes()


@pytest.mark.slow
def test_resume_continues_from_the_interim_potential_of_an_interrupted_fit(cu_files, generation_1, tmp_path):
    # What a killed fit leaves: no artifact.json, pacemaker's interim potential in its directory.
    interrupted = tmp_path / "killed" / "train"
    interrupted.mkdir(parents=True)
    shutil.copyfile(generation_1.artifact.path("potential_yaml"), interrupted / "interim_potential_0.yaml")
    spec = _spec(tmp_path, _training(cu_files, tmp_path / "resumed", "resume", 2,
                                     model_in=str(interrupted.parent)))
    artifact = PotentialArtifact.load(run_task(spec)["artifact"])
    start = tmp_path / "resumed" / "start" / "potential.yaml"
    assert start.read_bytes() == (interrupted / "interim_potential_0.yaml").read_bytes()
    assert (artifact.generation_dir / "initial_potential.yaml").read_bytes() == start.read_bytes()
    assert artifact.elements == ["Cu"]


def test_evaluate_matches_a_direct_prediction_and_energy_only_drops_forces(cu_files, generation_1, tmp_path):
    base = {"backend": "pacemaker", "model_in": str(generation_1.directory), "device": "cpu",
            "data": {"test": str(cu_files["test"])}}
    result = run_task(_spec(tmp_path, {**base, "task": "evaluate", "run_dir": str(tmp_path / "eval")}))
    frames = [f for _, f in read_labelled_frames(cu_files["test"]) if isinstance(f, LabelledFrame)]
    from mlip_autopipec.backends.pacemaker import make_calculator

    expected = predict(make_calculator(generation_1.artifact), frames).summary()
    assert result["metrics"]["forces_rmse_mev_per_angstrom"] == pytest.approx(
        expected["forces_rmse_mev_per_angstrom"], rel=1e-9)
    assert json.loads(Path(result["metrics_json"]).read_text())["metrics"] == result["metrics"]

    energy_only = run_task(_spec(tmp_path / "e", {**base, "task": "evaluate", "run_dir": str(tmp_path / "e1"),
                                                  "eval": {"energy_only": True}}))
    assert not any(key.startswith("forces") for key in energy_only["metrics"])
    assert energy_only["metrics"]["energy_rmse_mev_per_atom"] == pytest.approx(expected["energy_rmse_mev_per_atom"])


def test_infer_writes_predictions_with_per_atom_gamma(cu_files, generation_1, tmp_path):
    result = run_task(_spec(tmp_path, {"backend": "pacemaker", "task": "infer", "run_dir": str(tmp_path / "inf"),
                                       "model_in": str(generation_1.directory),
                                       "data": {"test": str(cu_files["test"]), "indices": [0, 3]}}))
    predicted = ase.io.read(result["predictions"], ":")
    source = ase.io.read(cu_files["test"], ":")
    assert result["frames"] == len(predicted) == 2
    assert np.allclose(predicted[1].positions, source[3].positions)
    assert predicted[0].arrays["gamma"].shape == (len(source[0]),)
    assert predicted[0].info["max_gamma"] == pytest.approx(predicted[0].arrays["gamma"].max())
    # Predictions, not the reference labels, are what the file holds.
    assert predicted[0].get_potential_energy() != pytest.approx(source[0].get_potential_energy(), abs=1e-9)


def test_export_copies_the_potential_files_with_their_digests(generation_1, tmp_path):
    result = run_task(_spec(tmp_path, {"backend": "pacemaker", "task": "export", "run_dir": str(tmp_path / "x"),
                                       "model_in": str(generation_1.directory / "artifact.json")}))
    manifest = json.loads(Path(result["manifest"]).read_text())
    assert set(manifest["files"]) == {"potential_yaml", "potential_yace", "active_set"}
    for role, entry in manifest["files"].items():
        assert (Path(result["manifest"]).parent / entry["path"]).read_bytes() == \
            generation_1.artifact.path(role).read_bytes()
    (Path(result["manifest"]).parent / manifest["files"]["potential_yaml"]["path"]).write_text("tampered")
    with pytest.raises(ValueError, match="changed after training"):
        calculator_from_manifest(result["manifest"])


def test_a_frame_without_forces_is_named(cu_files, tmp_path):
    frames = ase.io.read(cu_files["train"], ":")
    broken = frames[2].copy()  # geometry only: no calculator results
    ase.io.write(tmp_path / "broken.extxyz", frames[:2] + [broken])
    spec = _spec(tmp_path, {"backend": "pacemaker", "task": "train", "run_dir": str(tmp_path / "r"),
                            "data": {"train": str(tmp_path / "broken.extxyz")}})
    with pytest.raises(DatasetError, match="data.train: structure 2 has no energy"):
        run_task(spec)
