"""A campaign whose cpu, gpu and dft workers share nothing but the servers, for real, on loopback only.

The package's Prefect server (`service`: setup and `prefect deploy` done), a PostgreSQL store and a
moto S3 server. Three process workers (cpu-pool, gpu-pool, dft-pool), each from its own copy of the
checkout (`git ls-files` of the working tree) with its own scratch directory, PREFECT_HOME and HOME,
each as its own numeric uid/gid with its directory chowned to it and mode 0700: the operating system
itself forbids a worker to read another's files (which the test also checks). The campaign (2
generations, `storage:` on the bucket, labelling dispatched to label/dft and training to
train-generation/gpu) runs as a deployment run of active-learning/nightly on the cpu worker. Then:
the campaign finished with 2 generation records; every label run ran on dft-pool and both trainings
on gpu-pool; the gpu and dft scratch directories are empty; the generations the campaign holds are
the trees in S3 byte for byte; both PotentialGeneration blocks download from S3; no flow run
parameter names a path of another worker, and no S3 credential appears in any of them.

Runs as root only (as the PostgreSQL tests' CI does): switching uids needs it. An interpreter under a
directory other users cannot enter (pyenv in /root) is offered to the workers as hard links of the
same files (`_interpreter_for_other_users`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlip_autopipec.campaign.records import load_records
from mlip_autopipec.campaign.travel import dataset_name, generation_name, tree_bytes
from mlip_autopipec.files import sha256_file
from mlip_autopipec.storage import ObjectStore
from tests.conftest import PROJECT_ROOT
from tests.deployments.test_service import PYTHON, _client, _stop, _tail
from tests.flows.test_active_learning import TINY_CAMPAIGN

pytestmark = pytest.mark.slow

CAMPAIGN_TIMEOUT_S = 600
FIRST_UID = 47301  # cpu, gpu, dft: numeric ids without a passwd entry
POOLS = {"cpu": "cpu-pool", "gpu": "gpu-pool", "dft": "dft-pool"}


@dataclass
class Worker:
    kind: str
    uid: int
    root: Path  # mode 0700, owned by uid: checkout/, scratch/, home/, prefect-home/, tmp/
    log: Path
    process: subprocess.Popen | None = None

    @property
    def checkout(self) -> Path:
        return self.root / "checkout"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"


def test_workers_that_share_only_the_servers_run_a_two_generation_campaign(service, postgres_server, s3_server,
                                                                          tmp_path):
    if os.geteuid() != 0:
        pytest.skip("running each worker as its own uid needs root (as on CI)")
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.deployments import run_deployment

    from tasks.blocks import PotentialGeneration

    assert {"active-learning/nightly", "label/dft", "train-generation/gpu"} <= set(service.deployed)
    started = time.monotonic()
    bucket = s3_server.bucket()
    # Credentials of the workers' own, so that finding them anywhere in the server's records means a leak.
    credentials = {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
                   "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex}
    store_url = postgres_server.url(postgres_server.create_database("storage_campaign"))
    interpreter_root = Path(tempfile.mkdtemp(prefix="mlip-interpreter-"))
    workers = {kind: _make_worker(kind, FIRST_UID + index, tmp_path / f"{kind}-worker.log")
               for index, kind in enumerate(POOLS)}
    try:
        python, interpreter_env = _interpreter_for_other_users(interpreter_root)
        cpu = workers["cpu"]
        settings = copy.deepcopy(TINY_CAMPAIGN)
        settings["training"]["maxiter"] = 5  # this test is about where things run and what travels, not the fit
        settings["exploration"]["render_most_uncertain"] = False
        settings.update(campaign="cu-travel", workdir="run", store=store_url, storage=bucket,
                        stop={"max_generations": 2, "converged_fraction": None},
                        dispatch={"labeling_deployment": "label/dft", "training_deployment": "train-generation/gpu",
                                  "timeout_s": 400})
        campaign_file = cpu.root / "campaign" / "campaign.yaml"
        campaign_file.parent.mkdir()
        campaign_file.write_text(yaml.safe_dump(settings))
        for worker in workers.values():
            _hand_over(worker)
        _assert_private(workers, python, interpreter_env)

        for worker in workers.values():
            worker.process = _start_worker(worker, python, {**service.env, **s3_server.env, **credentials,
                                                            **interpreter_env})
        with _scoped(service):
            flow_run = run_deployment("active-learning/nightly", parameters={"config": str(campaign_file)},
                                      timeout=CAMPAIGN_TIMEOUT_S, poll_interval=3)
        with _client(service) as client:
            campaign_run = client.read_flow_run(flow_run.id)
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(), limit=200)
            label_runs, training_runs = (client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[client.read_deployment_by_name(name).id])))
                for name in ("label/dft", "train-generation/gpu"))
    finally:
        for worker in workers.values():
            if worker.process is not None:
                _stop(worker.process)
    seconds = time.monotonic() - started
    try:
        assert campaign_run.state.is_completed(), (f"{campaign_run.state}\ncpu worker:\n{_tail(cpu.log)}\n"
                                                   f"gpu worker:\n{_tail(workers['gpu'].log)}\n"
                                                   f"dft worker:\n{_tail(workers['dft'].log)}")
        assert campaign_run.work_pool_name == "cpu-pool"
        with _scoped(service):
            _check_campaign(workers, campaign_file, runs, label_runs, training_runs, credentials, bucket,
                            PotentialGeneration, tmp_path, seconds)
    finally:
        shutil.rmtree(interpreter_root, ignore_errors=True)
        for worker in workers.values():
            shutil.rmtree(worker.root, ignore_errors=True)


def _check_campaign(workers, campaign_file, runs, label_runs, training_runs, credentials, bucket,
                    PotentialGeneration, tmp_path, seconds):
    workdir = campaign_file.parent / "run"
    records = load_records(workdir / "generations")
    assert [record.generation for record in records] == [0, 1]

    mine = [run for run in label_runs if run.parameters["campaign"] in ("cu-travel", "cu-travel--held-out")]
    # the held-out set, then generation 0's bootstrap and the structures each generation selected
    assert len(mine) == 4, [(run.name, run.parameters) for run in mine]
    assert all(run.state.is_completed() and run.work_pool_name == "dft-pool" for run in mine)
    assert all(run.parameters["storage"] == bucket and "campaign_file" not in run.parameters for run in mine)
    training = [run for run in training_runs if run.parameters.get("name") == "cu-travel"]
    assert sorted(run.parameters["generation"] for run in training) == [0, 1]
    assert all(run.state.is_completed() and run.work_pool_name == "gpu-pool" for run in training)
    for kind, pool_runs in (("dft", mine), ("gpu", training)):
        text = workers[kind].log.read_text()
        assert all(f"Flow run '{run.name}'" in text for run in pool_runs)  # that worker ran them
        assert list(workers[kind].scratch.iterdir()) == []  # and left nothing in its scratch

    objects = ObjectStore(bucket)
    for generation in (0, 1):
        tree = objects.name(generation_name("cu-travel", generation))
        local = workdir / "generations" / f"gen-{generation:03d}"
        files = objects.tree_files(tree)
        assert {"artifact.json", "potential.yaml", "potential.yace"} <= set(files)
        assert all(sha256_file(local / relative) == entry["digest"] for relative, entry in files.items())
        block = PotentialGeneration.load(f"cu-travel-gen-{generation:03d}")
        assert block.tree_digest == tree and block.storage == bucket
        fresh = block.download(tmp_path / f"downloaded-{generation}")
        assert all(sha256_file(fresh / relative) == entry["digest"] for relative, entry in files.items())
        dataset = objects.name(dataset_name("cu-travel", generation))
        print(f"\ngeneration {generation}: dataset tree {tree_bytes(objects, dataset)} bytes, generation tree "
              f"{tree_bytes(objects, tree)} bytes in {len(files)} files (as published, with report/)")
    trained_by = [run.parameters["initial_tree"] for run in sorted(training, key=lambda r: r.parameters["generation"])]
    assert trained_by[0] is None and trained_by[1] is not None  # generation 1 started from generation 0's tree

    # No run got a path of another worker's machine, nor a credential.
    roots = {kind: str(worker.root) for kind, worker in workers.items()}
    for run in runs:
        text = json.dumps(run.parameters)
        assert not any(secret in text for secret in credentials.values()), run.name
        named = {kind for kind, root in roots.items() if root in text}
        allowed = {"cpu"} if run.work_pool_name in (None, "cpu-pool") else set()
        assert named <= allowed, (run.name, run.work_pool_name, run.parameters)
    for kind, worker in workers.items():  # the measured transfers, as each worker logged them
        transfers = [line.split("|")[-1].strip() for line in worker.log.read_text().splitlines()
                     if any(word in line for word in ("uploaded ", "fetched ", " as tree "))]
        print(f"{kind} worker's transfers:\n  " + "\n  ".join(transfers))
    print(f"campaign of 2 generations on 3 isolated workers: {seconds:.0f} s")


# -- workers --------------------------------------------------------------------------------------


def _make_worker(kind: str, uid: int, log: Path) -> Worker:
    """A private directory (not under pytest's, whose parents only root may enter) with a copy of
    every tracked file of the working tree."""
    root = Path(tempfile.mkdtemp(prefix=f"mlip-{kind}-worker-"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    for relative in filter(None, files.decode().split("\0")):
        source = PROJECT_ROOT / relative
        if source.is_file():
            target = root / "checkout" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name in ("scratch", "home", "prefect-home", "tmp"):
        (root / name).mkdir()
    return Worker(kind, uid, root, log)


def _hand_over(worker: Worker) -> None:
    for directory, names, files in os.walk(worker.root):
        for name in [directory, *(os.path.join(directory, entry) for entry in names + files)]:
            os.lchown(name, worker.uid, worker.uid)
    worker.root.chmod(0o700)


def _start_worker(worker: Worker, python: str, base_env: dict) -> subprocess.Popen:
    env = {**base_env, "HOME": str(worker.root / "home"), "USER": f"worker-{worker.kind}",
           "LOGNAME": f"worker-{worker.kind}", "PREFECT_HOME": str(worker.root / "prefect-home"),
           "TMPDIR": str(worker.root / "tmp"), "MLIP_AUTOPIPEC_SCRATCH": str(worker.scratch),
           "MLIP_AUTOPIPEC_ROOT": str(worker.checkout), "PYTHONPATH": f"{worker.checkout / 'src'}:{worker.checkout}",
           "PREFECT_WORKER_QUERY_SECONDS": "2"}
    env["PATH"] = f"{Path(python).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    with open(worker.log, "wb") as log:
        return subprocess.Popen([python, "-m", "prefect", "worker", "start", "--pool", POOLS[worker.kind],
                                 "--name", f"isolated-{worker.kind}"], cwd=worker.checkout, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, **_as_user(worker.uid))


def _as_user(uid: int) -> dict:
    """Popen's arguments that run the child as uid/gid `uid`, without supplementary groups."""
    return {"user": uid, "group": uid, "extra_groups": []}


def _assert_private(workers: dict[str, Worker], python: str, env: dict) -> None:
    """The proof's premise: as each worker's uid, the other workers' directories cannot be read."""
    probe = ("import sys, os\nfor path in sys.argv[1:]:\n    try:\n        os.listdir(path)\n"
             "    except PermissionError:\n        continue\n    sys.exit(f'{path} is readable')\n")
    for worker in workers.values():
        others = [str(other.root) for other in workers.values() if other is not worker]
        result = subprocess.run([python, "-c", probe, *others], env={**env, "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=60, **_as_user(worker.uid))
        assert result.returncode == 0, f"as the {worker.kind} worker: {result.stdout}{result.stderr}"


def _interpreter_for_other_users(root: Path) -> tuple[str, dict]:
    """The test's interpreter and .venv as a uid other than root can run them: as they are when every
    directory above the base interpreter lets others in, else through a virtual environment in `root`
    whose base is hard links of the same interpreter and standard library and whose site-packages is
    the project's .venv's (its scripts, whose first line names the .venv, are rewritten)."""
    import sys

    base = Path(os.path.realpath(PYTHON))
    prefix, venv = Path(sys.base_prefix), Path(sys.prefix)
    if not all(path.stat().st_mode & stat.S_IXOTH for path in venv.resolve().parents):
        pytest.skip(f"the project's .venv ({venv}) lies in a directory other uids cannot enter")
    if all(path.stat().st_mode & stat.S_IXOTH for path in [base, *base.parents]):
        return PYTHON, {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    root.chmod(0o755)
    (root / "base" / "bin").mkdir(parents=True)
    (root / "base" / "lib").mkdir()
    _link(base, root / "base" / "bin" / version)
    for library in prefix.glob("lib/libpython*"):
        _link(library, root / "base" / "lib" / library.name)
    shutil.copytree(prefix / "lib" / version, root / "base" / "lib" / version, copy_function=_link,
                    ignore=lambda directory, names: ["site-packages"] if Path(directory) == prefix / "lib" / version
                    else [])
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "lib" / version).mkdir(parents=True)
    (root / "venv" / "lib" / version / "site-packages").symlink_to(venv / "lib" / version / "site-packages")
    (root / "venv" / "pyvenv.cfg").write_text(f"home = {root / 'base' / 'bin'}\ninclude-system-site-packages = false\n"
                                              f"version = {sys.version.split()[0]}\n")
    python = root / "venv" / "bin" / "python"
    python.symlink_to(root / "base" / "bin" / version)
    shebang = f"#!{venv / 'bin' / 'python'}".encode()
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink() and script.read_bytes().startswith(shebang + b"\n"):
            target = root / "venv" / "bin" / script.name
            target.write_bytes(f"#!{python}".encode() + script.read_bytes()[len(shebang):])
            target.chmod(0o755)
    return str(python), {"LD_LIBRARY_PATH": str(root / "base" / "lib")}


def _link(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


@contextlib.contextmanager
def _scoped(service):
    """This process talks to the service's server; the events it emits (block loads) are sent before
    leaving, while that server runs: left queued, a later test harness's drain waits minutes on them."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: service.api}):
        try:
            yield
        finally:
            EventsWorker.drain_all(timeout=30)
