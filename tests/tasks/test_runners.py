"""build_task_runner: submitted tasks really run where the execution settings say."""

import threading
import time

from distributed import get_worker
from prefect import flow, task

from mlip_autopipec.config.execution import ExecutionSettings
from tasks.runners import build_task_runner


@task
def where_am_i(index: int) -> dict:
    time.sleep(0.2)  # long enough for the runner to spread the four tasks over its workers
    try:
        worker = get_worker().address
    except ValueError:  # not inside a Dask worker
        worker = None
    return {"thread": threading.get_ident(), "dask_worker": worker}


@flow
def fan_out_four() -> list[dict]:
    return [future.result() for future in where_am_i.map(range(4))]


def test_threads_run_tasks_off_the_flow_thread_and_not_on_dask():
    places = fan_out_four.with_options(task_runner=build_task_runner(ExecutionSettings(workers=2)))()
    threads = {place["thread"] for place in places}
    assert all(place["dask_worker"] is None for place in places)
    assert threading.get_ident() not in threads and len(threads) <= 2


def test_dask_starts_a_temporary_cluster_with_the_given_workers():
    settings = ExecutionSettings(task_runner="dask", workers=2,
                                 dask_cluster_kwargs={"processes": False, "dashboard_address": None})
    places = fan_out_four.with_options(task_runner=build_task_runner(settings))()
    workers = {place["dask_worker"] for place in places}
    assert None not in workers and 1 <= len(workers) <= 2
