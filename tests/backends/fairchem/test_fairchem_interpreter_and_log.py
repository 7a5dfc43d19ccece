"""Finding the FairChem interpreter, worker failures, and reading fairchem's log: no FairChem needed."""

from __future__ import annotations

import ast
import stat
import sys
from pathlib import Path

import pytest

from mlip_autopipec.backends.base import BackendNotFound
from mlip_autopipec.backends.fairchem.interpreter import ENV_VARIABLE, WorkerError, call_worker, find_python
from mlip_autopipec.backends.fairchem.log_watch import FairChemLogWatcher, parse_metrics

PREFIX = "2026-11-22 08:13:50 /venv/lib/python3.11/site-packages/fairchem/core/trainers/ocp_trainer.py:194: (INFO): "


def test_an_explicit_interpreter_that_is_missing_names_itself_and_the_setup_script(tmp_path):
    with pytest.raises(BackendNotFound, match="setup_fairchem.sh") as error:
        find_python(tmp_path / "nowhere" / "python")
    assert str(tmp_path / "nowhere" / "python") in str(error.value)


def test_the_environment_variable_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, sys.executable)
    assert find_python() == Path(sys.executable)
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(BackendNotFound, match=ENV_VARIABLE):
        find_python()


def _fake_python(tmp_path, body: str):
    """An executable standing in for the FairChem interpreter, to inject a fault."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_crashing_worker_reports_its_error_and_log_tail(tmp_path):
    python = _fake_python(tmp_path, 'echo "Traceback: torch_scatter is missing" >&2\n'
                                    'echo \'{"error": "ImportError: torch_scatter"}\'\nexit 1')
    with pytest.raises(WorkerError, match="ImportError: torch_scatter") as error:
        call_worker(python, ["describe", "--checkpoint", "x.pt"], tmp_path / "worker.log", timeout=30)
    assert "torch_scatter is missing" in str(error.value)  # the log tail comes with it
    assert "describe --checkpoint x.pt" in (tmp_path / "worker.log").read_text()


def test_a_silent_worker_is_an_error_not_an_empty_answer(tmp_path):
    python = _fake_python(tmp_path, "exit 0")
    with pytest.raises(WorkerError, match="no answer"):
        call_worker(python, ["describe", "--checkpoint", "x.pt"], tmp_path / "worker.log", timeout=30)


def test_a_hanging_worker_is_stopped(tmp_path):
    python = _fake_python(tmp_path, "sleep 30")
    with pytest.raises(WorkerError, match="exceeded 1 s"):
        call_worker(python, ["describe", "--checkpoint", "x.pt"], tmp_path / "worker.log", timeout=1)


def test_training_without_an_interpreter_fails_before_touching_the_generation(tmp_path, monkeypatch):
    from mlip_autopipec.backends.fairchem import EquiformerV2Trainer, FairChemConfig
    from mlip_autopipec.data.manifest import DatasetManifest

    manifest = DatasetManifest(seed=0, test_fraction=0.0, elements=["Cu"], counts={}, files=[], source={})
    trainer = EquiformerV2Trainer(python=tmp_path / "no-python")
    with pytest.raises(BackendNotFound):
        trainer.train(manifest, FairChemConfig(backend="equiformer_v2"), tmp_path / "gen")
    assert not (tmp_path / "gen").exists()
    with pytest.raises(ValueError, match="trains 'equiformer_v2'"):
        trainer.train(manifest, FairChemConfig(backend="gemnet_oc"), tmp_path / "gen")


def test_metrics_lines_are_parsed_and_other_lines_are_not():
    values = {"energy_mae": 0.0235, "forces_mae": 0.000954, "loss": 3.32, "lr": 0.0005, "epoch": 1.0, "step": 2.0}
    line = ", ".join(f"{key}: {value:.2e}" for key, value in values.items())
    assert parse_metrics(line) == pytest.approx(values, rel=1e-2)
    assert parse_metrics("Loading dataset: ase_db") is None
    assert parse_metrics("Total time taken: 115.6") is None


def test_the_watcher_keeps_training_and_validation_apart_and_reports_progress():
    events = []
    watcher = FairChemLogWatcher(max_epochs=2, progress=events.append)
    lines = ["  version: 1.10.0\n"]
    for step in (1, 2, 3, 4):
        lines.append(PREFIX + f"energy_mae: {0.5 / step:.2e}, forces_mae: 1.00e-03, loss: {4.0 / step:.2e}, "
                              f"lr: 5.00e-04, epoch: {step / 2:.2e}, step: {step:.2e}\n")
        if step % 2 == 0:
            lines.append(PREFIX.replace("ocp_trainer.py:194", "base_trainer.py:863") + "Evaluating on val.\n")
            lines.append(PREFIX + f"energy_mae: {0.3 / step:.4f}, forces_mae: 0.0013, loss: 8.0060, "
                                  f"epoch: {step / 2:.4f}\n")
    for line in lines:
        watcher.feed(line)
    assert watcher.version == "1.10.0"
    assert [entry["step"] for entry in watcher.train_history] == [1, 2, 3, 4]
    assert [entry["epoch"] for entry in watcher.val_history["val"]] == [1.0, 2.0]
    final = watcher.final_metrics()
    assert final["steps"] == 4 and final["train_loss"] == pytest.approx(1.0)
    assert final["val_energy_mae"] == pytest.approx(round(0.3 / 4, 4))
    assert [event.fraction for event in events] == [0.25, 0.5, 0.75, 1.0]
    assert not watcher.resumed
    watcher.feed(PREFIX + "Loading checkpoint from: /runs/a/checkpoint.pt\n")
    assert watcher.resumed


def test_the_worker_imports_nothing_of_ours():
    """worker.py runs by path in the FairChem interpreter, where mlip_autopipec is not installed."""
    from mlip_autopipec.backends.fairchem.interpreter import WORKER

    modules = set()
    for node in ast.walk(ast.parse(WORKER.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert "fairchem" in modules and "mlip_autopipec" not in modules
    assert modules <= {"__future__", "argparse", "json", "os", "sys", "traceback", "numpy", "ase", "torch", "fairchem"}
