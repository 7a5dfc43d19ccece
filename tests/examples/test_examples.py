"""Every run.yaml in examples/ parses; the Pacemaker and MACE ones run, in order, through the command
users type (`python -m flows.train --config examples/<backend>/<task>.yaml`), on the shared data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flows import train as train_flow
from mlip_autopipec.config.run_yaml import TRAINING_TASKS, load_run_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = PROJECT_ROOT / "examples"
BACKENDS = ("pacemaker", "mace", "equiformer_v2", "gemnet_oc")
TASKS = ("train", "finetune", "resume", "evaluate", "infer", "export")  # the order they chain in


def _examples(backend: str) -> list[Path]:
    return sorted(EXAMPLES.glob(f"{backend}/*.yaml"), key=lambda path: TASKS.index(path.stem))


@pytest.fixture
def examples_workdir(tmp_path, shared_data, monkeypatch) -> Path:
    """The layout the examples assume, in a scratch directory: examples/ and ../shared/data beside
    the working directory; runs/ lands there."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "examples").symlink_to(EXAMPLES)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    monkeypatch.chdir(work)
    return work


def test_every_backend_has_an_example_of_every_task_and_each_parses(examples_workdir):
    for backend in BACKENDS:
        names = [path.stem for path in _examples(backend)]
        assert names == list(TASKS), backend
        for path in _examples(backend):
            spec = load_run_spec(Path("examples") / backend / path.name, check_paths=False)
            assert (spec.backend, spec.task) == (backend, path.stem)
            for key, input_path in spec.input_paths().items():  # data and configs exist; models come from train
                if not key.startswith("model"):
                    assert input_path.exists(), f"{path}: {key}: {input_path}"
            if spec.task in TRAINING_TASKS and backend in ("pacemaker", "mace"):
                spec.training_config()  # input_json and the knobs make a valid training config


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pacemaker", "mace"])
def test_the_examples_run_in_order(backend, examples_workdir, prefect_server, capsys):
    seconds = {}
    for path in _examples(backend):
        started = time.monotonic()
        assert train_flow.main(["--config", f"examples/{backend}/{path.name}"]) == 0, capsys.readouterr().err
        seconds[path.stem] = round(time.monotonic() - started, 1)
    runs = examples_workdir / "runs" / "examples" / backend
    for task in ("train", "finetune", "resume"):
        assert (runs / task / "artifacts" / "manifest.json").is_file(), task
    assert json.loads((runs / "evaluate" / "eval_metrics.json").read_text())["metrics"]["frames"] == 8
    assert (runs / "infer" / "predictions.extxyz").is_file()
    assert (runs / "export" / "artifacts" / "manifest.json").is_file()
    print(f"{backend} examples: {seconds}")
