"""Runs whose process died stay "Running" in the Prefect UI for ever (`kill -9`, a lost node: nothing
tells the server). A campaign (or a `flows.train --out DIR`) is one directory, so its runs carry one
identity: the tag `workdir:<hash of the directory's path>`. A new run of it takes the directory's lock
(an flock on DIR/.prefect-run.lock, held until its process ends, released by the kernel when it dies);
holding it, it knows that every other run with that identity still Running or Pending has no process
left, and sets it Crashed ("process gone; resumed by run X") with its subflow runs and task runs.

Runs started from a deployment are covered by Prefect's own mechanism instead: flow runs send
heartbeats, and deployments.setup_server creates the automation that sets a run Crashed when they stop.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

LOCK_NAME = ".prefect-run.lock"
ALIVE = ("RUNNING", "PENDING")
_held: dict[str, int] = {}  # resolved directory -> the open lock file's descriptor (this process holds it)


def identity_tag(directory: str | os.PathLike) -> str:
    return "workdir:" + hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:12]


def hold_directory(directory: str | os.PathLike) -> bool:
    """Take `directory`'s lock for the rest of this process; False when another live process holds it."""
    path = str(Path(directory).resolve())
    if path in _held:
        return True
    Path(path).mkdir(parents=True, exist_ok=True)
    descriptor = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _held[path] = descriptor
    return True


def mark_earlier_runs_crashed(directory: str | os.PathLike) -> list[str]:
    """For the flow run in progress, which owns `directory`: tag it with the directory's identity and,
    holding the directory's lock, set every other Running or Pending run with that identity Crashed
    (with its subflow and task runs). Returns the names of the flow runs so marked; without a flow run
    or when another live process holds the directory, marks nothing."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    logger = get_run_logger()
    run, tag = context.flow_run, identity_tag(directory)
    with get_client(sync_client=True) as client:
        if tag not in run.tags:
            client.update_flow_run(run.id, tags=[*run.tags, tag])
        if not hold_directory(directory):
            logger.warning(f"another live process holds {Path(directory).resolve() / LOCK_NAME}: "
                           "its runs are left as they are")
            return []
        stale = [other for other in _flow_runs(client, tags=[tag]) if other.id != run.id]
        message = f"process gone; resumed by run {run.name!r} ({run.id})"
        for other in stale:
            _crash(client, other, message)
            logger.warning(f"run {other.name!r} ({other.id}) of this directory was left {other.state_name} by a "
                           "process that is gone: set Crashed")
    return [other.name for other in stale]


def _flow_runs(client, tags: list[str] | None = None, parents: list | None = None) -> list:
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterParentFlowRunId, FlowRunFilterState,
                                                FlowRunFilterStateType, FlowRunFilterTags)

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(
        tags=FlowRunFilterTags(all_=tags) if tags else None,
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents) if parents else None,
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(ALIVE)))))


def _crash(client, flow_run, message: str) -> None:
    """`flow_run` and what it left alive under it (task runs, subflow runs, recursively) set Crashed."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState
    from prefect.client.schemas.filters import TaskRunFilterStateType
    from prefect.states import Crashed

    for child in _flow_runs(client, parents=[flow_run.id]):
        _crash(client, child, message)
    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=list(ALIVE)))))
    for task_run in task_runs:
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    client.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
