"""Real, tiny EquiformerV2 and GemNet-OC trainings by fairchem-core 1.10 in its own interpreter,
on Cu-I structures: train, evaluate, infer, export, the calculator, resume and fine-tune.

Skipped (with the reason) where there is no FairChem interpreter: build one with
scripts/setup_fairchem.sh or point MLIP_FAIRCHEM_PYTHON at one.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlip_autopipec.backends.base import PotentialArtifact
from mlip_autopipec.files import sha256_file

pytestmark = [pytest.mark.fairchem, pytest.mark.slow]


def _spec(path: Path, **changes):
    from mlip_autopipec.config.run_yaml import load_run_spec

    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_run_spec(path)


def test_equiformer_v2_trains_from_run_yaml_and_exports(trained_equiformer_v2):
    run = trained_equiformer_v2
    artifact = PotentialArtifact.load(run.summary["artifact"])
    artifact.verify()
    assert artifact.backend == "equiformer_v2" and artifact.elements == ["Cu"]
    assert artifact.version.startswith("fairchem-core 1.10")
    generation = artifact.generation_dir
    # The logged command is fairchem's own CLI with our config, seed and identifier.
    command = next(line for line in (generation / "fairchem_train.log").read_text().splitlines()
                   if line.startswith("$ "))
    assert re.search(r"/fairchem --mode train --config-yml fairchem_config.yml --run-dir \. --identifier tiny "
                     r"--timestamp-id tiny --seed 3 .*--cpu", command)
    assert "--checkpoint" not in command
    # One optimizer step per batch of 4 of the 8 training structures, over 1 epoch; each step was logged.
    metrics = artifact.metrics
    assert metrics["steps"] == math.ceil(8 / 4) * 1
    history = json.loads(artifact.path("metrics_json").read_text())
    assert [entry["step"] for entry in history["train_history"]] == [1, 2]
    assert "val_energy_mae" in metrics and "val_forces_mae" in metrics
    assert [round(event.fraction, 2) for event in run.progress if "step" in event.message] == [0.5, 1.0]
    # The FairChem config trained with reads our ASE LMDB files.
    native = yaml.safe_load(artifact.path("config_yml").read_text())
    assert native["dataset"]["train"]["src"] == str(generation / "data" / "train.aselmdb")
    assert native["model"]["backbone"]["model"] == "equiformer_v2_backbone"
    # run_dir/artifacts: the checkpoint the artifact names, described from the checkpoint itself.
    manifest = json.loads(Path(run.summary["manifest"]).read_text())
    exported = Path(run.summary["manifest"]).parent / manifest["checkpoint"]["path"]
    assert manifest["checkpoint"]["sha256"] == sha256_file(exported) == artifact.digests["checkpoint"]
    assert manifest["model"]["backbone"] == "equiformer_v2_backbone" and manifest["model"]["parameters"] > 0
    assert manifest["versions"]["fairchem-core"].startswith("1.10")


def test_evaluate_infer_and_the_calculator_agree(trained_equiformer_v2, cu_frames_file, small_cu_frames):
    from mlip_autopipec.backends import get_trainer
    from mlip_autopipec.backends.run_yaml import run_task

    run = trained_equiformer_v2
    directory = run.run_yaml.parent
    picked = [0, 5, 11]
    infer = run_task(_spec(run.run_yaml, task="infer", run_dir=str(directory / "infer"),
                           model_in=str(run.run_dir), data={"test": str(cu_frames_file), "indices": picked}))
    evaluate = run_task(_spec(run.run_yaml, task="evaluate", run_dir=str(directory / "evaluate"),
                              model_in=str(run.run_dir / "artifacts" / "manifest.json"),
                              data={"test": str(cu_frames_file), "indices": picked}))
    import ase.io

    predictions = ase.io.read(infer["predictions"], index=":")
    assert len(predictions) == len(picked)
    # evaluate's errors are the ones of infer's predictions against the labels.
    references = [small_cu_frames[index] for index in picked]
    energy_errors = [1e3 * (p.info["FAIRCHEM_energy"] - r.get_potential_energy()) / len(r)
                     for p, r in zip(predictions, references)]
    force_errors = np.concatenate([1e3 * (p.arrays["FAIRCHEM_forces"] - r.get_forces()).ravel()
                                   for p, r in zip(predictions, references)])
    metrics = evaluate["metrics"]
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(np.mean(np.abs(energy_errors)), rel=1e-5)
    assert metrics["forces_rmse_mev_per_angstrom"] == pytest.approx(np.sqrt(np.mean(force_errors ** 2)), rel=1e-5)
    # The calculator (a model server in the FairChem interpreter) predicts the same numbers.
    artifact = PotentialArtifact.load(run.summary["artifact"])
    calculator = get_trainer("equiformer_v2").make_calculator(artifact)
    try:
        for prediction, reference in zip(predictions, references):
            atoms = reference.copy()
            atoms.calc = calculator
            assert atoms.get_potential_energy() == pytest.approx(prediction.info["FAIRCHEM_energy"], abs=1e-4)
            assert np.allclose(atoms.get_forces(), prediction.arrays["FAIRCHEM_forces"], atol=1e-4)
    finally:
        calculator.close()


def test_resume_continues_at_the_checkpoint_step(trained_equiformer_v2, fairchem_python, cu_frames_file,
                                                 run_yaml_writer):
    from mlip_autopipec.backends.run_yaml import run_task

    run = trained_equiformer_v2
    resume_yaml = run_yaml_writer(run.run_yaml.parent / "resumed", fairchem_python, cu_frames_file,
                                 "equiformer_v2", "resume", epochs=2, model_in=str(run.run_dir))
    summary = run_task(_spec(resume_yaml))
    artifact = PotentialArtifact.load(summary["artifact"])
    history = json.loads(artifact.path("metrics_json").read_text())["train_history"]
    first_steps = run.summary["metrics"]["steps"]
    # FairChem restored step and optimizer: the second epoch's steps follow the first run's.
    assert [entry["step"] for entry in history] == [first_steps + 1, first_steps + 2]
    assert "Loading checkpoint from: resume_checkpoint.pt" in artifact.path("log").read_text()
    record = json.loads(artifact.path("run_json").read_text())
    assert record["mode"] == "resume"
    assert record["checkpoint_sha256"] == sha256_file(run.run_dir / "train" / "checkpoints" / "tiny" / "checkpoint.pt")


def test_finetune_starts_at_step_zero_from_the_weights(trained_equiformer_v2, tmp_path):
    from mlip_autopipec.backends import get_trainer
    from mlip_autopipec.backends.fairchem.config import FairChemConfig
    from mlip_autopipec.data.manifest import DatasetManifest

    start = PotentialArtifact.load(trained_equiformer_v2.summary["artifact"])
    manifest = DatasetManifest.load(trained_equiformer_v2.run_dir / "data")
    # Different sizes in our config: fine-tuning keeps the starting model's architecture anyway.
    config = FairChemConfig(backend="equiformer_v2", epochs=1, batch_size=8, channels=32, device="cpu")
    artifact = get_trainer("equiformer_v2").train(manifest, config, tmp_path / "gen", initial_potential=start)
    history = json.loads(artifact.path("metrics_json").read_text())["train_history"]
    assert [entry["step"] for entry in history] == [1]  # a fresh trainer state: step 0, one batch of 8
    native = yaml.safe_load(artifact.path("config_yml").read_text())
    assert native["model"] == yaml.safe_load(start.path("config_yml").read_text())["model"]
    assert artifact.initial_potential == start.digest
    assert "--checkpoint start_checkpoint.pt" in artifact.path("log").read_text()


def test_gemnet_oc_trains_and_predicts(fairchem_python, cu_frames_file, run_yaml_writer, tmp_path):
    from mlip_autopipec.backends.run_yaml import run_task

    summary = run_task(_spec(run_yaml_writer(tmp_path, fairchem_python, cu_frames_file, "gemnet_oc", "train",
                                             with_test=True)))
    artifact = PotentialArtifact.load(summary["artifact"])
    artifact.verify()
    assert artifact.backend == "gemnet_oc"
    native = yaml.safe_load(artifact.path("config_yml").read_text())
    assert native["model"]["backbone"]["model"] == "gemnet_oc_backbone"
    assert artifact.metrics["steps"] == 2
    # The test split (all 13 structures) is scored after training through the worker.
    assert artifact.metrics["test_frames"] == 13
    assert np.isfinite(artifact.metrics["test_energy_rmse_mev_per_atom"])
    assert np.isfinite(artifact.metrics["test_forces_rmse_mev_per_angstrom"])
    assert json.loads(Path(summary["manifest"]).read_text())["model"]["backbone"] == "gemnet_oc_backbone"
