"""MACE's own failures: a lying `mace_run_train`, bad data, a retry after a timeout that resumes
(the shared faults are the Trainer contract: tests/backends/test_trainer_contract.py). A fake
`mace_run_train` (a Python script without torch) stands in for the real one, so these run in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlip_autopipec.backends import DatasetError, PotentialArtifact, TrainingError, TrainingTimeout
from mlip_autopipec.backends.mace import MaceTrainer
from mlip_autopipec.config.mace import MaceConfig
from tests.backends.fakes import fake_successful_run, write_fake_mace


def fake_trainer(directory: Path, body: str) -> MaceTrainer:
    return MaceTrainer(executables={"mace_run_train": write_fake_mace(directory, body)})


@pytest.fixture
def a_model(tmp_path) -> Path:
    """Any file: the fake only copies it to NAME.model (nothing here loads it)."""
    path = tmp_path / "source.model"
    path.write_bytes(b"not really a model")
    return path


def test_exit_without_a_model_file_is_an_error(mace_manifest, tmp_path):
    trainer = fake_trainer(tmp_path, "print('Done')\n")
    with pytest.raises(TrainingError, match="wrote no mace.model"):
        trainer.train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-001")


def test_a_log_without_error_tables_is_an_error(mace_manifest, tmp_path, a_model):
    trainer = fake_trainer(tmp_path, f"""
        Path("logs").mkdir()
        Path(f"logs/{{tag}}.log").write_text("INFO: Training complete\\n")
        shutil.copyfile({str(a_model)!r}, "mace.model")
    """)
    with pytest.raises(TrainingError, match="no final error table"):
        trainer.train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-001")


def test_fake_run_gives_an_artifact_with_the_logged_metrics_and_arguments(mace_manifest, tmp_path, a_model):
    trainer = fake_trainer(tmp_path, fake_successful_run(a_model))
    config = MaceConfig(device="cpu", epochs=3, E0s={"Cu": -3.7}, extra_args=["--ema"])
    artifact = trainer.train(mace_manifest, config, tmp_path / "gen-001")
    assert artifact.metrics["test_energy_rmse_mev_per_atom"] == 1.9
    assert artifact.metrics["valid_forces_rmse_mev_per_angstrom"] == 2.7
    assert artifact.metrics["train_forces_rmse_relative_percent"] == 10.0
    assert artifact.metrics["best_epoch"] == 2 and artifact.metrics["epochs"] == 3
    assert artifact.version == "mace-torch 0.0-fake"
    assert "compiled_model" not in artifact.files  # the fake compiles nothing
    argv = json.loads((artifact.generation_dir / "argv.json").read_text())
    pairs = dict(zip(argv, argv[1:], strict=False))  # each option with the word after it
    assert pairs["--max_num_epochs"] == "3" and pairs["--E0s"] == "{29: -3.7}"
    assert pairs["--train_file"] == str(mace_manifest.path_of("mace", "train").resolve())
    assert pairs["--test_file"] == str(mace_manifest.path_of("mace", "test").resolve())
    assert pairs["--device"] == "cpu" and pairs["--default_dtype"] == "float64"
    assert argv[-1] == "--ema" and "--restart_latest" not in argv and "--foundation_model" not in argv


def test_committee_trains_one_model_per_seed(mace_manifest, tmp_path, a_model):
    trainer = fake_trainer(tmp_path, fake_successful_run(a_model))
    events: list = []
    artifact = trainer.train(mace_manifest, MaceConfig(device="cpu", epochs=2, committee_size=3, seed=7),
                             tmp_path / "gen-001", progress=events.append)
    assert artifact.files["model"] == "mace.model"
    assert artifact.files["committee_model_1"] == "mace_member1.model"
    assert artifact.files["committee_model_2"] == "mace_member2.model"
    assert (artifact.generation_dir / "logs" / "mace_member2_run-9.log").is_file()  # seed 7 + 2
    assert artifact.metrics["committee_size"] == 3 and "member2_test_energy_rmse_mev_per_atom" in artifact.metrics
    from mlip_autopipec.backends.mace.calculator import model_paths_of

    assert [path.name for path in model_paths_of(artifact)] == ["mace.model", "mace_member1.model",
                                                                "mace_member2.model"]
    messages = [event.message for event in events]
    assert any(message.startswith("model 3/3: epoch 2/2") for message in messages)
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_retry_after_a_timeout_resumes_from_the_failed_attempts_checkpoint(mace_manifest, tmp_path, a_model):
    hang_after_a_checkpoint = """
        Path("checkpoints").mkdir()
        Path(f"checkpoints/{tag}_epoch-4.pt").write_bytes(b"epoch 4 weights")
        print("INFO: ===========TRAINING===========", flush=True)
        time.sleep(300)
    """
    config = MaceConfig(device="cpu", epochs=6, timeout_seconds=3)
    generation = tmp_path / "gen-001"
    with pytest.raises(TrainingTimeout):
        fake_trainer(tmp_path, hang_after_a_checkpoint).train(mace_manifest, config, generation)

    retry_dir = tmp_path / "retry"
    retry_dir.mkdir()
    artifact = fake_trainer(retry_dir, fake_successful_run(a_model)).train(
        mace_manifest, config.model_copy(update={"timeout_seconds": 60}), generation)
    attempt = generation / "failed-attempts" / "attempt-1"
    assert (attempt / "checkpoints" / "mace_run-42_epoch-4.pt").is_file()  # the evidence is kept
    assert "--restart_latest" in json.loads((generation / "argv.json").read_text())
    assert artifact.metrics["resumed_from_epoch"] == 4
    assert (generation / "restarted_from.bin").read_bytes() == b"epoch 4 weights"


def test_a_retry_with_another_config_starts_over(mace_manifest, tmp_path, a_model):
    crash_after_a_checkpoint = """
        Path("checkpoints").mkdir()
        Path(f"checkpoints/{tag}_epoch-4.pt").write_bytes(b"epoch 4 weights")
        sys.exit(1)
    """
    generation = tmp_path / "gen-001"
    with pytest.raises(TrainingError):
        fake_trainer(tmp_path, crash_after_a_checkpoint).train(mace_manifest, MaceConfig(device="cpu"), generation)
    retry_dir = tmp_path / "retry"
    retry_dir.mkdir()
    artifact = fake_trainer(retry_dir, fake_successful_run(a_model)).train(
        mace_manifest, MaceConfig(device="cpu", lr=0.001), generation)
    assert "--restart_latest" not in json.loads((generation / "argv.json").read_text())
    assert "resumed_from_epoch" not in artifact.metrics


def test_resume_and_foundation_model_reach_the_command_line(mace_manifest, tmp_path, a_model):
    source = tmp_path / "previous-run"
    (source / "checkpoints").mkdir(parents=True)
    for epoch in (3, 11):
        (source / "checkpoints" / f"other_run-5_epoch-{epoch}.pt").write_bytes(f"epoch {epoch}".encode())
    trainer = fake_trainer(tmp_path, fake_successful_run(a_model))
    artifact = trainer.train(mace_manifest, MaceConfig(device="cpu", epochs=13), tmp_path / "gen-002",
                             foundation_model=a_model, resume_from=source)
    argv = json.loads((artifact.generation_dir / "argv.json").read_text())
    assert argv[argv.index("--foundation_model") + 1] == "initial.model"
    assert argv[argv.index("--multiheads_finetuning") + 1] == "False"
    assert "--restart_latest" in argv
    # The latest checkpoint, renamed to our run's tag so MACE's --restart_latest finds it.
    assert (artifact.generation_dir / "restarted_from.bin").read_bytes() == b"epoch 11"
    assert artifact.metrics["resumed_from_epoch"] == 11
    assert artifact.path("initial_model").read_bytes() == a_model.read_bytes()


def test_resume_from_a_directory_without_checkpoints_is_refused_before_training(mace_manifest, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no MACE checkpoint"):
        MaceTrainer().train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-001",
                            resume_from=tmp_path / "empty")
    badly_named = tmp_path / "best.pt"
    badly_named.write_bytes(b"")
    with pytest.raises(DatasetError, match="epoch in the file name"):
        MaceTrainer().train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-001", resume_from=badly_named)
    assert not (tmp_path / "gen-001").exists()


def test_a_dataset_without_the_mace_format_is_a_dataset_error(cu_manifest, tmp_path):
    with pytest.raises(DatasetError, match="without the 'mace' format"):
        MaceTrainer().train(cu_manifest, MaceConfig(device="cpu"), tmp_path / "gen-001")  # pacemaker + extxyz only
    assert not (tmp_path / "gen-001").exists()


def test_fine_tuning_from_another_backend_or_without_the_elements_is_refused(mace_manifest, tmp_path):
    ace = PotentialArtifact(backend="pacemaker", elements=["Cu"], files={}, digests={}, version="test",
                            dataset_digest="", config_digest="")
    with pytest.raises(DatasetError, match="cannot fine-tune a MACE model from a pacemaker potential"):
        MaceTrainer().train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-002", initial_potential=ace)
    aluminium = ace.model_copy(update={"backend": "mace", "elements": ["Al"]})
    with pytest.raises(DatasetError, match=r"contains \['Cu'\], which the initial potential does not cover"):
        MaceTrainer().train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-002",
                            initial_potential=aluminium)
    with pytest.raises(DatasetError, match="foundation model file does not exist"):
        MaceTrainer().train(mace_manifest, MaceConfig(device="cpu"), tmp_path / "gen-002",
                            foundation_model=tmp_path / "missing.model")
    with pytest.raises(TypeError, match="needs a MaceConfig"):
        MaceTrainer().train(mace_manifest, object(), tmp_path / "gen-002")  # type: ignore[arg-type]


def test_delta_learning_trains_on_labels_minus_the_baseline(mace_manifest, tmp_path, a_model):
    import ase.io
    from ase.calculators.emt import EMT

    from mlip_autopipec.calculators import CalculatorSpec

    trainer = fake_trainer(tmp_path, fake_successful_run(a_model))
    artifact = trainer.train(mace_manifest, MaceConfig(device="cpu", baseline=CalculatorSpec(factory="emt")),
                             tmp_path / "gen-001")
    argv = json.loads((artifact.generation_dir / "argv.json").read_text())
    assert argv[argv.index("--train_file") + 1] == "delta_train_mace.extxyz"
    assert argv[argv.index("--test_file") + 1] == "delta_test_mace.extxyz"
    original = ase.io.read(mace_manifest.path_of("mace", "train"), 0)
    delta = ase.io.read(artifact.path("delta_train"), 0)
    reference = original.copy()
    reference.calc = EMT()
    assert delta.info["REF_energy"] == pytest.approx(original.info["REF_energy"] - reference.get_potential_energy())
    assert artifact.baseline == CalculatorSpec(factory="emt")


def test_e0s_without_an_element_of_the_data_is_refused_before_training(mace_manifest, tmp_path):
    """A committee whose E0s lack Cu would have every member fail inside mace_run_train."""
    config = MaceConfig(device="cpu", committee_size=2, E0s={"Ni": -1.5})
    with pytest.raises(DatasetError, match=r"E0s gives isolated-atom energies for \['Ni'\].*include \['Cu'\]"):
        MaceTrainer().train(mace_manifest, config, tmp_path / "gen-001")
    assert not (tmp_path / "gen-001").exists()
