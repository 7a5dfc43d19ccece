"""Runs whose process is killed (`kill -9`) do not stay "Running" in the UI for ever, checked for real
on the package's Prefect server (the `service` fixture, set up by deployments.setup_server):

- a cheap flow that owns a directory as a campaign owns its workdir (tasks.run_identity, as
  flows.active_learning and flows.train call it) is killed while its subflow's task runs; the next
  start on that directory sets the killed flow run, its subflow run and its task run Crashed;
- a killed run that no one restarts: the automation of setup_server (here with a grace of seconds,
  restricted to this test's tag) sets it Crashed once its heartbeats stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

START_S = 120  # a flow process on a busy 2-core machine: imports, then its runs appear in the API


def owner_flow(directory: str, ready: str | None, tag: str) -> None:
    """What the test runs in its own process: a flow that claims `directory` at its start, then (with
    `ready`) a subflow whose task writes `ready` and sleeps until it is killed."""
    from prefect import flow, tags, task

    from tasks.run_identity import mark_earlier_runs_crashed

    @task
    def hang() -> None:
        Path(ready).write_text("running\n")
        time.sleep(600)

    @flow(name="crash-check-subflow")
    def subflow() -> None:
        hang()

    @flow(name="crash-check")
    def owner() -> list[str]:
        marked = mark_earlier_runs_crashed(directory)
        print(f"marked: {marked}")
        if ready:
            subflow()
        return marked

    with tags(tag):
        owner()


def test_the_next_start_sets_the_killed_run_and_its_subflow_and_task_crashed(service, tmp_path):
    tag = f"crash-check-{uuid.uuid4().hex[:8]}"
    directory, ready = tmp_path / "campaign", tmp_path / "ready"
    killed = _start(service, directory, ready, tag)
    _wait_for(ready.exists, START_S, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(10)
    [before] = _flow_runs(service, tag, "crash-check")
    assert before["state"]["type"] == "RUNNING"

    started = time.monotonic()
    restart = _start(service, directory, None, tag)
    output, _ = restart.communicate(timeout=START_S)
    service.seconds["restart that marks the killed run"] = time.monotonic() - started
    assert restart.returncode == 0, output[-3000:]
    runs = {run["id"]: run for run in _flow_runs(service, tag, "crash-check")}
    first, second = runs[before["id"]], next(run for run in runs.values() if run["id"] != before["id"])
    assert second["state"]["type"] == "COMPLETED" and f"marked: [{first['name']!r}]" in output
    assert first["state"]["type"] == "CRASHED"
    assert first["state"]["message"] == f"process gone; resumed by run {second['name']!r} ({second['id']})"
    [child] = _flow_runs(service, tag, "crash-check-subflow")
    assert child["state"]["type"] == "CRASHED" and "resumed by run" in child["state"]["message"]
    task_runs = _post(service, "task_runs/filter", {"flow_runs": {"id": {"any_": [child["id"]]}}})
    assert [run["state"]["type"] for run in task_runs] == ["CRASHED"]


def test_the_automation_sets_a_killed_run_crashed_when_its_heartbeats_stop(service, tmp_path):
    from deployments.setup_server import ZOMBIE_AUTOMATION, zombie_automation

    assert any(f"automation {ZOMBIE_AUTOMATION}: created" in output for output in service.setup_outputs[:1])
    assert f"automation {ZOMBIE_AUTOMATION}: unchanged" in service.setup_outputs[1]
    tag = f"heartbeat-check-{uuid.uuid4().hex[:8]}"
    # The server's automation with seconds, not minutes, of grace; only for this test's runs.
    automation = zombie_automation(grace_s=10, name=f"{ZOMBIE_AUTOMATION} ({tag})", tag=tag)
    _post(service, "automations/", json.loads(automation.model_dump_json()))
    ready = tmp_path / "ready"
    started = time.monotonic()
    killed = _start(service, tmp_path / "other", ready, tag, {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"})
    _wait_for(ready.exists, START_S, killed)
    time.sleep(2)  # the first heartbeats (sent at each run's start) reach the server
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(10)

    def crashed() -> bool:
        runs = _flow_runs(service, tag, "crash-check")
        return bool(runs) and runs[0]["state"]["type"] == "CRASHED"

    _wait_for(crashed, 90)
    service.seconds["killed run set Crashed by the automation"] = time.monotonic() - started
    [run] = _flow_runs(service, tag, "crash-check")
    assert "no heartbeat for 10 s" in run["state"]["message"]


# -- helpers ------------------------------------------------------------------------------------


def _start(service, directory: Path, ready: Path | None, tag: str, env: dict | None = None) -> subprocess.Popen:
    code = (f"from tests.deployments.test_crashed_runs import owner_flow; "
            f"owner_flow({str(directory)!r}, {str(ready) if ready else None!r}, {tag!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**service.env, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for(condition, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the flow process exited with {process.returncode}:\n"
                                 f"{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {seconds} s")
        time.sleep(0.5)


def _flow_runs(service, tag: str, flow_name: str) -> list[dict]:
    return _post(service, "flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}},
                                               "flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_ASC"})


def _post(service, path: str, body: dict):
    request = urllib.request.Request(f"{service.api}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
