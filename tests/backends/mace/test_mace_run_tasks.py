"""Unified run.yaml tasks with the MACE backend: train (real), evaluate, infer, export on its result;
finetune and resume plumbing with a fake mace_run_train (reached through backend_python); ASE LMDB
input; sampling."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ase.io
import pytest
import yaml

from mlip_autopipec.backends.base import PotentialArtifact
from mlip_autopipec.backends.mace.export import ExportManifest
from mlip_autopipec.backends.run_yaml import run_task
from mlip_autopipec.config.run_yaml import load_run_spec
from mlip_autopipec.data.ase_lmdb import read_ase_lmdb, write_ase_lmdb
from tests.backends.fakes import fake_successful_run, write_fake_mace


def _spec(directory: Path, content: dict):
    path = directory / f"run-{content['task']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    return load_run_spec(path)


@pytest.fixture(scope="module")
def model_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "model.json"
    path.write_text(json.dumps({"num_channels": 8, "max_L": 0, "correlation": 2, "r_max": 4.0,
                                "radial_MLP": [16, 16], "valid_fraction": 0.2, "seed": 1}))
    return path


@pytest.fixture(scope="module")
def trained_run(mace_manifest, model_json, tmp_path_factory):
    """A real 1-epoch training through run.yaml, with a separate validation file and sampling."""
    run_dir = tmp_path_factory.mktemp("models") / "cu" / "run-1"
    spec = _spec(run_dir.parent, {
        "backend": "mace", "task": "train", "run_dir": str(run_dir), "device": "cpu",
        "data": {"train": str(mace_manifest.path_of("extxyz", "train")),
                 "val": str(mace_manifest.path_of("extxyz", "test")),
                 "test": str(mace_manifest.path_of("mace", "test")),
                 "train_indices": {"max_samples": 18, "shuffle": True, "seed": 3}},
        "train": {"input_json": str(model_json), "epochs": 1, "batch_size": 4, "progress_bar": False},
    })
    events: list = []
    return spec, run_task(spec, progress=events.append), events


@pytest.mark.slow
def test_train_task_writes_a_generation_its_data_and_artifacts(trained_run, mace_manifest):
    spec, result, events = trained_run
    run_dir = Path(spec.run_dir)
    artifact = PotentialArtifact.load(run_dir / "train")
    artifact.verify()
    assert result["metrics"] == artifact.metrics and artifact.metrics["epochs"] == 1
    assert any(event.message.startswith("epoch 1/1") for event in events)
    # The sampled training set and the validation file, as MACE saw them.
    train = ase.io.read(run_dir / "data" / "train_mace.extxyz", ":")
    assert len(train) == 18 and "REF_energy" in train[0].info
    assert "--valid_file" in artifact.path("log").read_text()
    manifest = ExportManifest.load(run_dir / "artifacts" / "manifest.json")
    manifest.verify()
    assert manifest.config["task"] == "train" and manifest.metrics == artifact.metrics


@pytest.mark.slow
def test_evaluate_and_infer_tasks_on_the_trained_run(trained_run, mace_manifest, tmp_path):
    spec, _, _ = trained_run
    test_file = str(mace_manifest.path_of("extxyz", "test"))
    evaluated = run_task(_spec(tmp_path, {"backend": "mace", "task": "evaluate", "run_dir": str(tmp_path / "eval"),
                                          "model_in": str(spec.run_dir), "device": "cpu",
                                          "data": {"test": test_file}}))
    assert evaluated["split"] == "test" and evaluated["metrics"]["frames"] == mace_manifest.counts["test"]
    assert json.loads(Path(evaluated["metrics_json"]).read_text())["metrics"] == evaluated["metrics"]
    energy_only = run_task(_spec(tmp_path, {
        "backend": "mace", "task": "evaluate", "run_dir": str(tmp_path / "eval-e"), "device": "cpu",
        "model": {"manifest": str(Path(spec.run_dir) / "artifacts" / "manifest.json")},
        "data": {"test": test_file, "indices": [0, 1]}, "eval": {"energy_only": True}}))
    assert energy_only["metrics"]["frames"] == 2 and "forces_rmse_mev_per_angstrom" not in energy_only["metrics"]
    inferred = run_task(_spec(tmp_path, {"backend": "mace", "task": "infer", "run_dir": str(tmp_path / "infer"),
                                         "model_in": str(spec.run_dir), "device": "cpu", "data": {"test": test_file}}))
    predicted = ase.io.read(inferred["predictions"], ":")
    assert len(predicted) == mace_manifest.counts["test"] and "MACE_forces" in predicted[0].arrays


@pytest.mark.slow
def test_export_task_and_lmdb_input(trained_run, mace_manifest, tmp_path):
    spec, _, _ = trained_run
    exported = run_task(_spec(tmp_path, {"backend": "mace", "task": "export", "run_dir": str(tmp_path / "export"),
                                         "model_in": str(Path(spec.run_dir) / "train" / "mace.model")}))
    manifest = ExportManifest.load(exported["manifest"])
    assert manifest.source.endswith("mace.model") and manifest.config["task"] == "export"
    # A directory of ASE LMDB shards evaluates like the extxyz it came from.
    frames = ase.io.read(mace_manifest.path_of("extxyz", "test"), ":")
    shards = tmp_path / "shards"
    shards.mkdir()
    write_ase_lmdb(frames[:3], shards / "part-0.aselmdb")
    write_ase_lmdb(frames[3:], shards / "part-1.aselmdb")
    assert len(list(read_ase_lmdb(shards))) == len(frames)
    from_lmdb = run_task(_spec(tmp_path, {"backend": "mace", "task": "evaluate", "run_dir": str(tmp_path / "e1"),
                                          "model_in": exported["manifest"], "device": "cpu",
                                          "data": {"test": str(shards)}}))
    from_xyz = run_task(_spec(tmp_path, {"backend": "mace", "task": "evaluate", "run_dir": str(tmp_path / "e2"),
                                         "model_in": exported["manifest"], "device": "cpu",
                                         "data": {"test": str(mace_manifest.path_of("extxyz", "test"))}}))
    assert from_lmdb["metrics"] == pytest.approx(from_xyz["metrics"], rel=1e-12)


@pytest.fixture
def fake_python(tmp_path, a_model_file) -> Path:
    """backend_python whose bin/ holds a fake mace_run_train."""
    bin_dir = tmp_path / "fake-env" / "bin"
    bin_dir.mkdir(parents=True)
    os.symlink(sys.executable, bin_dir / "python")
    write_fake_mace(bin_dir, fake_successful_run(a_model_file) + """
        Path("env.json").write_text(json.dumps({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}))
    """)
    return bin_dir / "python"


@pytest.fixture
def a_model_file(tmp_path) -> Path:
    path = tmp_path / "any.model"
    path.write_bytes(b"fake model")
    return path


def test_finetune_and_resume_tasks_reach_mace_run_train(mace_manifest, model_json, fake_python, a_model_file,
                                                         tmp_path, monkeypatch):
    import mlip_autopipec.backends.mace.export as export

    monkeypatch.setattr(export, "export_model", lambda generation_dir, run_dir, config: None)
    train_file = str(mace_manifest.path_of("mace", "train"))
    base = {"backend": "mace", "device": "cpu", "backend_python": str(fake_python),
            "backend_env": {"OMP_NUM_THREADS": "1"}, "data": {"train": train_file}}
    first = run_task(_spec(tmp_path, {**base, "task": "train", "run_dir": str(tmp_path / "r1"),
                                      "train": {"input_json": str(model_json), "epochs": 3}}))
    generation = Path(first["generation_dir"])
    assert json.loads((generation / "env.json").read_text()) == {"OMP_NUM_THREADS": "1"}
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] != "1"

    finetuned = run_task(_spec(tmp_path, {**base, "task": "finetune", "run_dir": str(tmp_path / "r2"),
                                          "model_in": str(tmp_path / "r1"), "train": {"epochs": 2, "lr": 0.001}}))
    argv = json.loads((Path(finetuned["generation_dir"]) / "argv.json").read_text())
    assert argv[argv.index("--foundation_model") + 1] == "initial.model" and argv[argv.index("--lr") + 1] == "0.001"
    assert PotentialArtifact.load(finetuned["generation_dir"]).initial_potential == \
        PotentialArtifact.load(generation).digest

    # Resume from the first run's directory with more epochs: its architecture comes from its mace_config.json.
    resumed = run_task(_spec(tmp_path, {**base, "task": "resume", "run_dir": str(tmp_path / "r3"),
                                        "model_in": str(tmp_path / "r1"), "train": {"epochs": 5}}))
    argv = json.loads((Path(resumed["generation_dir"]) / "argv.json").read_text())
    assert "--restart_latest" in argv and argv[argv.index("--max_num_epochs") + 1] == "5"
    assert argv[argv.index("--num_channels") + 1] == "8"  # from r1's config, not the default 32
    assert resumed["metrics"]["resumed_from_epoch"] == 2


def test_resume_from_a_bare_checkpoint_needs_the_model_json(mace_manifest, tmp_path):
    from mlip_autopipec.config.run_files import ConfigError

    checkpoint = tmp_path / "elsewhere" / "x_run-1_epoch-3.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    spec = _spec(tmp_path, {"backend": "mace", "task": "resume", "run_dir": str(tmp_path / "r"), "device": "cpu",
                            "model_in": str(checkpoint), "data": {"train": str(mace_manifest.path_of("mace", "train"))}})
    with pytest.raises(ConfigError, match="train.input_json: needed to resume from"):
        run_task(spec)


def test_sampling_indices_out_of_range_name_the_split(mace_manifest, model_json, tmp_path):
    from mlip_autopipec.backends.base import DatasetError

    spec = _spec(tmp_path, {"backend": "mace", "task": "train", "run_dir": str(tmp_path / "r"), "device": "cpu",
                            "data": {"train": str(mace_manifest.path_of("mace", "train")), "indices": [0, 999]},
                            "train": {"input_json": str(model_json)}})
    with pytest.raises(DatasetError, match=r"data.train .* indices \[999\] are out of range"):
        run_task(spec)
