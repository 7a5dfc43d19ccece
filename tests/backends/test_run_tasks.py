"""Every backend the run.yaml schema accepts has a task runner behind `run_task`."""

import importlib
import typing

from mlip_autopipec.backends.run_tasks import RUNNERS
from mlip_autopipec.config.run_yaml import Backend
from mlip_autopipec.config.training import parse_training_config


def test_every_schema_backend_has_a_runner_and_a_training_config():
    assert set(RUNNERS) == set(typing.get_args(Backend))
    for backend, target in RUNNERS.items():
        module_name, function_name = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), function_name)), backend
        assert parse_training_config({"backend": backend}).backend == backend
