import pytest
from pydantic import ValidationError

from mlip_autopipec.config.execution import ExecutionSettings


def test_defaults_are_a_thread_pool_and_dask_settings_are_read():
    assert ExecutionSettings().task_runner == "threads"
    settings = ExecutionSettings.model_validate({
        "task_runner": "dask", "workers": 4, "dask_cluster_class": "dask_jobqueue.SLURMCluster",
        "dask_cluster_kwargs": {"cores": 8, "memory": "32GB"}, "dask_adapt_kwargs": {"maximum": 20}})
    assert settings.dask_cluster_kwargs == {"cores": 8, "memory": "32GB"}


@pytest.mark.parametrize("settings, message", [
    ({"dask_address": "tcp://scheduler:8786"}, "dask_address: used only with task_runner: dask"),
    ({"task_runner": "dask", "dask_address": "tcp://scheduler:8786", "dask_cluster_kwargs": {"n_workers": 2}},
     "dask_address connects to a running cluster"),
    ({"task_runner": "ray"}, "task_runner"),
    ({"workers": 0}, "workers"),
    ({"task_runer": "dask"}, "task_runer"),  # a typo is an error, never ignored
])
def test_inconsistent_settings_are_refused_naming_the_field(settings, message):
    with pytest.raises(ValidationError, match=message):
        ExecutionSettings.model_validate(settings)
