"""The training flow end to end: real pacemaker, a temporary Prefect server, Cu DFT data."""

import asyncio
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
import yaml
from PIL import Image

from flows import train as train_flow
from mlip_autopipec.backends import PotentialArtifact
from tasks.blocks import PotentialGeneration
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

TINY_TRAINING = {
    "backend": "pacemaker", "cutoff": 5.0, "number_of_functions_per_element": 12,
    "nradmax_by_orders": [5, 2], "lmax_by_orders": [0, 1], "maxiter": 25, "seed": 1,
    # Without the ZBL core our evaluation must reproduce pacemaker's own test metrics; with it, a
    # test bond shorter than any training bond meets the hard core, which pacemaker's fit metrics omit.
    "repulsion": None,
}


@pytest.fixture(scope="module")
def cu_subset(tmp_path_factory, shared_data):
    """36 small Cu structures: enough for a real fit, fast on 2 cores."""
    frames = [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(atoms) <= 2][::3][:36]
    path = tmp_path_factory.mktemp("data") / "cu-small.extxyz"
    ase.io.write(path, frames)
    return path


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "train.yaml"
    path.write_text(yaml.safe_dump({"campaign": "cu-test", "export": {"test_fraction": 0.2, "seed": 0},
                                    "training": TINY_TRAINING}))
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cu_subset, tiny_config):
    out = tmp_path_factory.mktemp("run")
    return out, train_flow.train(out=str(out), config=str(tiny_config), data=[str(cu_subset)])


def test_a_generation_with_its_potential_metrics_and_report(first_run):
    out, result = first_run
    artifact = PotentialArtifact.load(result.artifact)
    artifact.verify()
    for role in ("potential_yaml", "potential_yace", "active_set"):
        assert artifact.path(role).stat().st_size > 0
    metrics = result.evaluation.metrics
    assert result.evaluation.split == "test" and metrics["frames"] >= 5
    pacemaker_says = artifact.metrics
    assert metrics["energy_rmse_mev_per_atom"] == pytest.approx(pacemaker_says["test_energy_rmse_mev_per_atom"], rel=1e-3)
    assert metrics["forces_rmse_mev_per_angstrom"] == pytest.approx(pacemaker_says["test_forces_rmse_mev_per_angstrom"], rel=1e-3)
    for plot in result.evaluation.plots.values():
        pixels = np.asarray(Image.open(plot).convert("L"))
        assert pixels.shape[1] > 600 and pixels.std() > 10  # a drawn figure, not a blank canvas


def test_published_block_and_artifacts_can_be_read_back(first_run):
    _, result = first_run
    block = PotentialGeneration.load(result.block)
    assert block.campaign == "cu-test" and block.generation == 0
    assert block.potential_digest == result.digest
    assert block.metrics["eval_forces_rmse_mev_per_angstrom"] == pytest.approx(
        result.evaluation.metrics["forces_rmse_mev_per_angstrom"])

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest(key):
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1]

    report = asyncio.run(latest("cu-test-potential-report"))
    assert "generation 0" in report.data and "forces (meV/Å)" in report.data
    assert asyncio.run(latest("cu-test-potential-metrics")).type == "table"


def test_running_the_same_command_again_trains_nothing(first_run, cu_subset, tiny_config):
    out, result = first_run
    log = PotentialArtifact.load(result.artifact).path("log")
    before = log.stat().st_mtime_ns
    again = train_flow.train(out=str(out), config=str(tiny_config), data=[str(cu_subset)])
    assert again.digest == result.digest and again.generation_dir == result.generation_dir
    assert log.stat().st_mtime_ns == before
    assert sorted(p.name for p in (out / "generations").iterdir()) == ["gen-000"]


def test_fine_tuning_makes_the_next_generation(first_run, tiny_config, tmp_path):
    out, result = first_run
    config = yaml.safe_load(tiny_config.read_text())
    config["training"]["maxiter"] = 10
    changed = tmp_path / "finetune.yaml"
    changed.write_text(yaml.safe_dump(config))
    tuned = train_flow.train(out=str(out), config=str(changed), store=str(out / "structures.db"),
                             initial_potential=result.generation_dir)
    artifact = PotentialArtifact.load(tuned.artifact)
    assert artifact.generation_dir.name == "gen-001"
    assert artifact.initial_potential == result.digest


def test_bad_config_is_a_clear_error(tmp_path, cu_subset, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"training": {"backend": "pacemaker", "cutof": 5.0}}))
    code = train_flow.main(["--config", str(config), "--data", str(cu_subset), "--out", str(tmp_path / "o")])
    assert code == 2  # before anything started: nothing created
    assert capsys.readouterr().err == f"error: {config}: training.cutof: unknown key\n"
    assert not (tmp_path / "o").exists()


def test_against_a_running_prefect_server(tmp_path, cu_subset, tiny_config):
    """`PREFECT_API_URL` set: the same command runs against a real `prefect server start`."""
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        api = f"http://127.0.0.1:{port}/api"
        _wait_for_health(api, seconds=120)
        result = subprocess.run(
            [sys.executable, "-m", "flows.train", "--config", str(tiny_config), "--data", str(cu_subset),
             "--out", str(tmp_path / "run")],
            cwd=PROJECT_ROOT, env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Starting temporary server" not in result.stderr
        runs = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "ls"],
                              env={**env, "PREFECT_API_URL": api, "COLUMNS": "250"},
                              capture_output=True, text=True, timeout=120)
        assert "train" in runs.stdout and "COMPLETED" in runs.stdout
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def _wait_for_health(api: str, seconds: float) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"prefect server at {api} did not become healthy in {seconds} s")



def test_a_run_yaml_runs_its_task_through_the_same_command(first_run, cu_subset, tmp_path):
    """run.yaml (top-level task:) is routed to the backend's task runner; its artifact is published."""
    from prefect.client.orchestration import get_client

    from mlip_autopipec.backends.pacemaker import make_calculator
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames
    from mlip_autopipec.validation.errors import predict

    out, result = first_run
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"backend": "pacemaker", "task": "evaluate", "run_dir": str(tmp_path / "ev"),
                                        "model_in": result.generation_dir, "device": "cpu",
                                        "data": {"test": str(cu_subset)}}))
    assert train_flow.main(["--config", str(run_yaml)]) == 0
    written = yaml.safe_load((tmp_path / "ev" / "eval_metrics.json").read_text())
    frames = [f for _, f in read_labelled_frames(cu_subset) if isinstance(f, LabelledFrame)]
    expected = predict(make_calculator(PotentialArtifact.load(result.generation_dir)), frames).summary()
    forces_rmse = written["metrics"]["forces_rmse_mev_per_angstrom"]
    assert forces_rmse == pytest.approx(expected["forces_rmse_mev_per_angstrom"])

    async def latest_artifacts():
        async with get_client() as client:
            return await client.read_latest_artifacts()
    published = [a for a in asyncio.run(latest_artifacts()) if a.key == "pacemaker-evaluate"]
    assert published and f"{forces_rmse:.6g}" in published[0].data

    # A run.yaml says where its data is: mixing in --data is refused before anything runs.
    with pytest.raises(SystemExit) as refused:
        train_flow.main(["--config", str(run_yaml), "--data", str(cu_subset)])
    assert refused.value.code == 2


def test_a_minority_species_trains_and_the_console_says_it_has_no_gamma_yet(tmp_path, caplog):
    """Six Cu31Ni cells (EMT): Ni has too few environments for its functions. The run finishes,
    publishes, and says so."""
    from tests.conftest import doped_cu_cells

    data = tmp_path / "cu-ni.extxyz"
    ase.io.write(data, [frame.to_atoms() for frame in doped_cu_cells(6, {"Ni": 1}, seed=3)])
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"campaign": "cu-ni-minority", "export": {"test_fraction": 0.2, "seed": 0},
                                      "training": {**TINY_TRAINING, "maxiter": 5}}))
    result = train_flow.train(out=str(tmp_path / "run"), config=str(config), data=[str(data)])
    assert set(result.evaluation.species_without_gamma) == {"Ni"}
    assert set(result.evaluation.per_element) == {"Cu", "Ni"}
    assert "no γ yet for Ni: " in caplog.text  # the flow's print, which Prefect logs (log_prints)
