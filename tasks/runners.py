"""The Prefect task runner that `execution:` settings ask for.

    my_flow.with_options(task_runner=build_task_runner(settings))(...)

Tasks a flow `.submit()`s or `.map()`s then run on it; tasks it calls directly still run inline.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from mlip_autopipec.config.execution import ExecutionSettings


def build_task_runner(settings: ExecutionSettings) -> TaskRunner:
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.workers)
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    if settings.dask_cluster_class:
        return DaskTaskRunner(cluster_class=settings.dask_cluster_class,
                              cluster_kwargs=settings.dask_cluster_kwargs,
                              adapt_kwargs=settings.dask_adapt_kwargs or None)
    # One single-threaded process per worker: a labelling job is one subprocess that a thread waits on,
    # and separate processes behave like the remote workers they stand in for.
    return DaskTaskRunner(cluster_kwargs={"n_workers": settings.workers, "threads_per_worker": 1,
                                          **settings.dask_cluster_kwargs},
                          adapt_kwargs=settings.dask_adapt_kwargs or None)
