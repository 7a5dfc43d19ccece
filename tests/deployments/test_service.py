"""The "as a service" path of deployments/README.md, for real, on loopback only.

`prefect server start` on a free port (its own PREFECT_HOME), `python -m deployments.setup_server`
twice, `prefect deploy` from the project root, then per triggered deployment a process worker on its
pool and `prefect deployment run`, checked through the API:
- label/dft on dft-pool, a store with two pending Cu structures: COMPLETED, its table artifact, and
  EMT labels in the store equal to EMT computed here;
- train/gpu on gpu-pool, a tiny pacemaker fit: COMPLETED, generation files, artifacts, the block.
About a minute on 2 cores; every process it starts is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import psutil
import pytest
import yaml
from ase.calculators.emt import EMT

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tasks.publish import slug
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell

pytestmark = pytest.mark.slow

PYTHON = sys.executable
CAMPAIGN_FLOW = PROJECT_ROOT / "flows" / "active_learning.py"
# Every deployment of prefect.yaml but the campaign's (deployed too when its flow file exists).
DEPLOYMENTS = {"train/gpu": "gpu-pool", "train-generation/gpu": "gpu-pool", "label/dft": "dft-pool",
               "validate/cpu": "cpu-pool", "ingest/cpu": "cpu-pool", "export/cpu": "cpu-pool"}
PULL_STEPS = [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MLIP_AUTOPIPEC_ROOT }}"}}]
SERVER_START_S = 150
RUN_TIMEOUT_S = 180


@dataclass
class Service:
    api: str
    env: dict  # for clients of the server: CLI, setup script, worker
    workdir: Path
    setup_outputs: list[str] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def start_service(tmp_path_factory):
    """A real server, set up twice and deployed; yields what the tests need, then stops everything.
    The `service` fixture (tests/deployments/conftest.py): one for every test of this package."""
    workdir = tmp_path_factory.mktemp("service")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing from the caller's Prefect configuration leaks in (profiles, API URL, logging).
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "MLIP_AUTOPIPEC_ROOT"}
    base.update(PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                COLUMNS="250", PYTHONUNBUFFERED="1")
    api = f"http://127.0.0.1:{port}/api"
    service = Service(api=api, env={**base, "PREFECT_API_URL": api}, workdir=workdir)

    started = time.monotonic()
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen([PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], cwd=workdir, env=base, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_health(api, SERVER_START_S, server, workdir / "server.log")
        service.seconds["server start"] = time.monotonic() - started

        for attempt in range(2):
            started = time.monotonic()
            result = _run([PYTHON, "-m", "deployments.setup_server"], service.env, timeout=120)
            service.seconds[f"setup_server #{attempt + 1}"] = time.monotonic() - started
            service.setup_outputs.append(result.stdout)

        # Deployed without MLIP_AUTOPIPEC_ROOT: each worker resolves the checkout from its own environment.
        names = [] if CAMPAIGN_FLOW.is_file() else [arg for name in DEPLOYMENTS for arg in ("--name", name)]
        started = time.monotonic()
        result = _run([PYTHON, "-m", "prefect", "deploy", "--no-prompt", *(names or ["--all"])],
                      service.env, timeout=240)
        service.seconds["prefect deploy"] = time.monotonic() - started
        service.deployed = re.findall(r"Deployment '([^']+)' successfully (?:created|updated)", result.stdout)
        yield service
    finally:
        # Events this process emitted to the server (block loads, runs started) go now, while it runs:
        # left queued, the session's last Prefect test harness would wait minutes draining them.
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=30)
        _stop(server)
        print("\nmeasured: " + ", ".join(f"{k} {v:.1f} s" for k, v in service.seconds.items()))


def test_setup_creates_pools_limit_and_block_types_once(service):
    first, second = service.setup_outputs
    for pool in ("cpu-pool", "gpu-pool", "dft-pool"):
        assert f"work pool {pool}: created" in first
        assert f"work pool {pool}: unchanged" in second
    assert "concurrency limit gpu: created (1 slot)" in first
    assert "concurrency limit gpu: unchanged" in second
    assert "block type potential-generation: registered" in second

    with _client(service) as client:
        pools = {name: client.read_work_pool(name) for name in ("cpu-pool", "gpu-pool", "dft-pool")}
        limit = client.read_global_concurrency_limit_by_name("gpu")
        block_type = client.read_block_type_by_slug("potential-generation")
    assert {pool.type for pool in pools.values()} == {"process"}
    assert pools["gpu-pool"].concurrency_limit == 1 and pools["cpu-pool"].concurrency_limit is None
    assert limit.limit == 1 and limit.active
    assert block_type.name == "Potential Generation"


def test_deploy_puts_each_flow_on_its_pool_with_explicit_pull_steps(service):
    assert set(DEPLOYMENTS) <= set(service.deployed), service.deployed
    with _client(service) as client:
        deployments = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
    for name, pool in DEPLOYMENTS.items():
        assert deployments[name].work_pool_name == pool, name
        assert deployments[name].pull_steps == PULL_STEPS, name
    assert deployments["train/gpu"].job_variables == {"env": {"CUDA_VISIBLE_DEVICES": "0"}}
    assert deployments["label/dft"].parameters == {"calculator": {"factory": "emt", "kwargs": {}}}


def test_the_campaign_is_deployed_nightly_on_the_cpu_pool(service):
    if not CAMPAIGN_FLOW.is_file():
        pytest.skip(f"{CAMPAIGN_FLOW.relative_to(PROJECT_ROOT)} does not exist yet: the campaign is not deployed")
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client(service) as client:
        [nightly] = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=["nightly"])))
    assert nightly.entrypoint == "flows/active_learning.py:active_learning"
    assert nightly.work_pool_name == "cpu-pool" and nightly.pull_steps == PULL_STEPS
    assert nightly.parameters == {"config": "campaigns/cuni-demo.yaml"}
    assert (PROJECT_ROOT / nightly.parameters["config"]).is_file()
    [schedule] = nightly.schedules
    assert schedule.active and schedule.schedule.cron == "0 2 * * *"
    # Prefect keeps a deployment's limit as a global concurrency limit of its own.
    assert nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_a_triggered_label_run_completes_on_a_process_worker(service):
    campaign = "service test"
    store_path = service.workdir / "label-campaign" / "structures.db"
    store_path.parent.mkdir()
    cells = [fcc_cell("Cu", seed=seed) for seed in (1, 2)]
    store = StructureStore(store_path, campaign=campaign)
    ids = [outcome.id for outcome in store.add(
        [NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING) for atoms in cells])]

    flow_run, artifacts = _trigger_and_wait(service, "label/dft", "dft-pool", [
        f"store={store_path}", f"campaign={campaign}", "timeout_s=120"])

    [table] = [artifact for artifact in artifacts if artifact.key == f"{slug(campaign)}-labels"]
    assert table.type == "table" and "2 completed, 0 failed" in table.description
    for row_id, atoms in zip(ids, cells):
        row = StructureStore(store_path, campaign=campaign).get(row_id)
        assert row.status is Status.COMPLETED
        atoms.calc = EMT()
        assert row.frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        assert abs(row.frame.forces - atoms.get_forces()).max() < 1e-10
    assert (store_path.parent / "labeling").is_dir()  # job directories beside the store


def test_a_triggered_training_run_publishes_a_generation_on_the_gpu_pool(service, shared_data):
    """A real (tiny) pacemaker fit through gpu-pool's worker: generation files, artifacts, the block."""
    from tasks.blocks import PotentialGeneration
    from tests.flows.test_train import TINY_TRAINING

    frames = [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(atoms) <= 2][::3][:36]
    data = service.workdir / "cu-small.extxyz"
    ase.io.write(data, frames)
    config = service.workdir / "train.yaml"
    config.write_text(yaml.safe_dump({"campaign": "service-train", "export": {"test_fraction": 0.2, "seed": 0},
                                      "training": TINY_TRAINING}))
    out = service.workdir / "train-run"

    flow_run, artifacts = _trigger_and_wait(service, "train/gpu", "gpu-pool", [
        f"out={out}", f"config={config}", f"data={json.dumps([str(data)])}"])

    keys = {artifact.key for artifact in artifacts}
    assert {"service-train-potential-metrics", "service-train-potential-report"} <= keys
    generation = out / "generations" / "gen-000"
    for name in ("potential.yaml", "potential.yace", "potential.asi"):
        assert (generation / name).stat().st_size > 0
    with _client(service) as client:  # the block's document, read without Block.load's events
        # named after the run (--out's directory), so two runs of one campaign never share a block
        document = client.read_block_document_by_name("train-run-gen-000", "potential-generation")
    block = PotentialGeneration.model_validate(document.data)
    assert block.generation == 0 and Path(block.generation_dir) == generation.resolve()
    assert block.campaign == "service-train"


# -- helpers ------------------------------------------------------------------------------------


def _trigger_and_wait(service: Service, deployment: str, pool: str, params: list[str]):
    """Start a worker on `pool`, run the README's `prefect deployment run`, wait for a final state.

    Returns the finished flow run (asserted COMPLETED, run by this worker) and its artifacts."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    worker_log = service.workdir / f"{pool}-worker.log"
    worker_env = {**service.env, "MLIP_AUTOPIPEC_ROOT": str(PROJECT_ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen([PYTHON, "-m", "prefect", "worker", "start", "--pool", pool,
                                   "--name", f"test-{pool}-worker"], cwd=service.workdir, env=worker_env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        triggered = _run([PYTHON, "-m", "prefect", "deployment", "run", deployment,
                          *[arg for param in params for arg in ("-p", param)]], service.env, timeout=120)
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout).group(1)
        with _client(service) as client:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            flow_run = client.read_flow_run(flow_run_id)
            while not flow_run.state.is_final():
                assert time.monotonic() < deadline, (
                    f"flow run still {flow_run.state.name} after {RUN_TIMEOUT_S} s; worker log:\n"
                    + _tail(worker_log))
                assert worker.poll() is None, "the worker died:\n" + _tail(worker_log)
                time.sleep(1)
                flow_run = client.read_flow_run(flow_run_id)
            service.seconds[f"triggered {deployment} run"] = time.monotonic() - started
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    finally:
        _stop(worker)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(worker_log)}"
    assert flow_run.work_pool_name == pool
    assert f"Flow run '{flow_run.name}'" in worker_log.read_text()  # this worker ran it
    return flow_run, artifacts


def _scoped_settings(service: Service):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: service.api})


def _client(service: Service):
    from prefect.client.orchestration import get_client

    class _Scoped:
        def __enter__(self):
            self._settings = _scoped_settings(service)
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            try:
                return self._client.__exit__(*exc)
            finally:
                self._settings.__exit__(*exc)

    return _Scoped()


def _run(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(command[1:])} failed ({result.returncode}):\n" \
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _wait_for_health(api: str, seconds: float, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with {server.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api} not healthy after {seconds} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    """Stop a server or worker and everything it started, flow-run processes in their own sessions too.

    An idle Prefect 3.8 worker only logs the first SIGINT/SIGTERM and keeps polling; the second one
    makes it SIGKILL itself. A server stops on the first."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig, wait_s in ((signal.SIGINT, 10), (signal.SIGINT, 5), (signal.SIGKILL, 5)):
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=10)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({path}: {exc})"
