"""Every backend the run.yaml schema accepts has a run.yaml runner behind `run_task`."""

import importlib
import typing

from mlip_autopipec.backends.run_yaml import RUNNERS
from mlip_autopipec.config.run_yaml import Backend, Task
from mlip_autopipec.config.training import parse_training_config


def test_every_schema_backend_has_a_runner_for_every_task_and_a_training_config():
    assert set(RUNNERS) == set(typing.get_args(Backend))
    for backend, module_name in RUNNERS.items():
        runner = importlib.import_module(module_name)
        for task in ("train", "evaluate", "infer", "export"):
            assert callable(getattr(runner, task)), (backend, task)
        assert {"train", "finetune", "resume", "evaluate", "infer", "export"} == set(typing.get_args(Task))
        assert parse_training_config({"backend": backend}).backend == backend
