"""The Prefect task runner that `execution:` settings ask for.

    with prefect_api_for_workers(settings):
        my_flow.with_options(task_runner=build_task_runner(settings))(...)

Tasks a flow `.submit()`s or `.map()`s then run on it; tasks it calls directly still run inline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings
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


@contextlib.contextmanager
def prefect_api_for_workers(settings: ExecutionSettings) -> Iterator[None]:
    """Let Dask worker processes report their task runs to this process's Prefect API.

    Workers take the API URL from the task context they are sent. With no PREFECT_API_URL (the
    embedded default) that URL is empty and every worker process would start a temporary server of its
    own: 10-30 s each, and its task runs in a database nobody looks at. So start this process's
    temporary server now (the one its flows use anyway) and name it in the context. It listens on
    127.0.0.1: workers on other hosts need a real server (set PREFECT_API_URL).
    """
    if settings.task_runner != "dask" or PREFECT_API_URL.value():
        yield
        return
    server = SubprocessASGIServer()
    server.start()  # a no-op when this process's flows already started it
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield
