"""Real `mace_run_train` on Cu DFT data (CPU, tiny model): outputs, metrics equal to MACE's own
log, a working calculator, resume from a checkpoint, fine-tuning, committees."""

from __future__ import annotations

import json
import math
import re

import ase.io
import numpy as np
import pytest

from mlip_autopipec.backends import GenerationExistsError, PotentialArtifact, Trainer, get_trainer
from mlip_autopipec.backends.mace import MaceTrainer, make_mace_calculator
from mlip_autopipec.backends.mace.inference import evaluate

pytestmark = pytest.mark.slow

_TABLE_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|$", re.MULTILINE)


def _mace_log_rows(artifact) -> dict[str, tuple[float, float]]:
    """(energy RMSE, force RMSE) per row of the error tables, read straight from MACE's own log."""
    text = artifact.path("mace_log").read_text()
    return {row: (float(energy), float(forces)) for row, energy, forces, _ in _TABLE_ROW.findall(text)}


def test_generation_holds_model_logs_and_provenance(mace_generation, mace_manifest):
    artifact = mace_generation.artifact
    assert isinstance(get_trainer("mace"), Trainer)
    for role in ("model", "compiled_model", "log", "mace_log", "metrics_json", "config_json"):
        assert artifact.path(role).stat().st_size > 0, role
    reloaded = PotentialArtifact.load(mace_generation.directory)
    reloaded.verify()
    assert reloaded.digests == artifact.digests
    assert reloaded.dataset_digest == mace_manifest.digest
    assert reloaded.config_digest == mace_generation.config.digest()
    assert reloaded.elements == ["Cu"] and reloaded.version == "mace-torch 0.3.16"
    # The exact command is in our log, so it can be rerun by hand in the generation directory.
    log = artifact.path("log").read_text()
    assert "$ " in log and "--max_num_epochs 2" in log and "--energy_key REF_energy" in log
    assert str(mace_manifest.path_of("mace", "train").resolve()) in log
    with pytest.raises(GenerationExistsError):
        MaceTrainer().train(mace_manifest, mace_generation.config, mace_generation.directory)


def test_metrics_are_finite_and_equal_maces_own_tables(mace_generation):
    metrics = mace_generation.artifact.metrics
    rows = _mace_log_rows(mace_generation.artifact)
    assert set(rows) == {"train_Default", "valid_Default", "Default_Default"}
    for split, row in (("train", "train_Default"), ("valid", "valid_Default"), ("test", "Default_Default")):
        energy, forces = metrics[f"{split}_energy_rmse_mev_per_atom"], metrics[f"{split}_forces_rmse_mev_per_angstrom"]
        assert math.isfinite(energy) and math.isfinite(forces)
        assert (energy, forces) == rows[row]
    assert metrics["epochs"] == 2 and metrics["best_epoch"] in (0, 1)
    history = json.loads(mace_generation.artifact.path("metrics_json").read_text())["history"]
    assert [entry["epoch"] for entry in history["valid"]] == [None, 0, 1]
    best = history["valid"][int(metrics["best_epoch"]) + 1]
    assert metrics["valid_loss"] == best["loss"]
    assert metrics["valid_forces_mae_mev_per_angstrom"] == best["forces_mae_mev_per_angstrom"]


def test_progress_reports_every_epoch(mace_generation):
    epochs = [event for event in mace_generation.progress if event.message.startswith("epoch")]
    assert [event.iteration for event in epochs] == [1, 2]
    assert all(event.loss is not None and event.loss > 0 for event in epochs)
    fractions = [event.fraction for event in mace_generation.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_calculator_reproduces_maces_test_errors(mace_generation, mace_manifest):
    artifact = mace_generation.artifact
    calculator = get_trainer("mace").make_calculator(artifact)
    frames = ase.io.read(mace_manifest.path_of("mace", "test"), ":")
    atoms = frames[0].copy()
    atoms.calc = calculator
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (len(atoms), 3)
    # Our batched evaluation of the test split agrees with MACE's table (printed to 0.1 meV).
    ours = evaluate(artifact.generation_dir, mace_manifest.path_of("mace", "test")).metrics
    assert ours["energy_rmse_mev_per_atom"] == pytest.approx(artifact.metrics["test_energy_rmse_mev_per_atom"], abs=0.051)
    assert ours["forces_rmse_mev_per_angstrom"] == pytest.approx(artifact.metrics["test_forces_rmse_mev_per_angstrom"], abs=0.051)
    # ...and with the ASE calculator, frame by frame.
    reference = []
    for frame in frames:
        copy = frame.copy()
        copy.calc = calculator
        reference.append((copy.get_potential_energy() - frame.info["REF_energy"]) / len(frame))
    assert 1e3 * np.sqrt(np.mean(np.square(reference))) == pytest.approx(ours["energy_rmse_mev_per_atom"], rel=1e-9)


@pytest.fixture(scope="module")
def resumed(mace_generation, mace_manifest, tiny_mace_config, tmp_path_factory):
    best = int(mace_generation.artifact.metrics["best_epoch"])
    config = tiny_mace_config(epochs=best + 2)  # one or two more epochs after the checkpoint's
    events: list = []
    artifact = MaceTrainer().train(mace_manifest, config, tmp_path_factory.mktemp("resume") / "gen-002",
                                   progress=events.append, resume_from=mace_generation.directory)
    return artifact, events, best


def test_resume_continues_from_the_checkpoints_epoch(resumed):
    artifact, events, best = resumed
    assert artifact.metrics["resumed_from_epoch"] == best
    epochs = [event.iteration - 1 for event in events if event.message.startswith("epoch")]
    assert epochs[0] == best and epochs[-1] == best + 1  # MACE reruns the checkpoint's epoch, then goes on
    log = artifact.path("log").read_text()
    assert "--restart_latest" in log and f"Loading checkpoint: ./checkpoints/mace_run-1_epoch-{best}.pt" in log


@pytest.fixture(scope="module")
def fine_tuned(mace_generation, mace_manifest, tiny_mace_config, tmp_path_factory):
    # Different architecture settings on purpose: fine-tuning keeps the starting model's.
    config = tiny_mace_config(epochs=1, num_channels=16, lr=0.005)
    artifact = MaceTrainer().train(mace_manifest, config, tmp_path_factory.mktemp("finetune") / "gen-002",
                                   initial_potential=mace_generation.artifact)
    return artifact


def test_fine_tuning_starts_from_the_previous_model(fine_tuned, mace_generation):
    assert fine_tuned.initial_potential == mace_generation.artifact.digest
    assert fine_tuned.path("initial_model").read_bytes() == mace_generation.artifact.path("model").read_bytes()
    log = fine_tuned.path("mace_log").read_text()
    assert "Using foundation model initial.model as initial checkpoint" in log
    # Same seed, same validation split: before its first step the fine-tuned model scores what the
    # starting model scored at its saved epoch (the log prints the loss to 8 decimals).
    initial_loss = float(re.search(r"Initial: head: Default, loss=([\d.eE+-]+)", log).group(1))
    assert initial_loss == pytest.approx(mace_generation.artifact.metrics["valid_loss"], abs=5.1e-9)
    history = json.loads(fine_tuned.path("metrics_json").read_text())["history"]["valid"]
    assert history[0]["epoch"] is None
    assert history[0]["loss"] == pytest.approx(mace_generation.artifact.metrics["valid_loss"], rel=1e-9)
    first = make_mace_calculator([fine_tuned.path("model")], device="cpu")
    assert first.models[0].node_embedding.linear.weight.numel() == \
        make_mace_calculator([mace_generation.artifact.path("model")], device="cpu").models[0] \
        .node_embedding.linear.weight.numel()  # 8 channels kept, not the config's 16


def test_two_models_form_a_committee_with_force_deviation(fine_tuned, mace_generation, mace_manifest):
    committee = make_mace_calculator([mace_generation.artifact.path("model"), fine_tuned.path("model")],
                                     device="cpu")
    frames = ase.io.read(mace_manifest.path_of("extxyz", "train"), ":")
    atoms = max(frames, key=len).copy()  # the 64-atom phonon supercell
    atoms.calc = committee
    forces = atoms.get_forces()
    results = committee.results
    assert results["forces_comm"].shape == (2, len(atoms), 3)
    assert np.allclose(forces, results["forces_comm"].mean(axis=0))
    expected = np.sqrt(np.mean(np.sum((results["forces_comm"] - forces) ** 2, axis=2), axis=0))
    assert np.allclose(results["forces_std"], expected)
    assert results["max_force_std"] == pytest.approx(expected.max()) and results["max_force_std"] > 0
    assert results["energy_std"] == pytest.approx(np.sqrt(results["energy_var"]))
