"""One campaign generation with all state on PostgreSQL (the structure store and the Prefect server)
and its labelling and MD walkers fanned out on a temporary Dask cluster.

A real PostgreSQL server (tests/postgres.py) holds two databases: the campaign's structure store and
the database of a real `prefect server start` (PREFECT_SERVER_DATABASE_CONNECTION_URL with asyncpg)
on a free loopback port. `python -m flows.active_learning` runs the tiny campaign of
test_active_learning.py for one generation against that server; then the labels are read from the
store's database and the flow runs from the server's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psycopg2
import pytest
import yaml
from ase.calculators.emt import EMT

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import load_records
from mlip_autopipec.campaign.steps import md_walker_indices
from mlip_autopipec.store import StructureStore
from tests.conftest import PROJECT_ROOT
from tests.deployments.test_service import _stop, _tail, _wait_for_health
from tests.flows.test_active_learning import TINY_CAMPAIGN

pytestmark = pytest.mark.slow

SERVER_START_S = 150
CAMPAIGN_TIMEOUT_S = 600


@pytest.fixture(autouse=True)
def _on_prefect_server():
    """Replaces tests/flows' temporary SQLite server: this test starts its own, on PostgreSQL."""


@pytest.fixture(scope="module")
def prefect_on_postgres(postgres_server, tmp_path_factory):
    """`prefect server start` with its database on PostgreSQL; yields (api_url, env, database URL)."""
    workdir = tmp_path_factory.mktemp("prefect-on-postgres")
    database = postgres_server.create_database("prefect")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    # Nothing from the caller's Prefect configuration leaks in (profiles, API URL, the test harness).
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(workdir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_DATABASE_CONNECTION_URL=postgres_server.url(database, driver="postgresql+asyncpg"),
               PYTHONUNBUFFERED="1")
    log = workdir / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], cwd=workdir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        _wait_for_health(api, SERVER_START_S, server, log)
        print(f"\nprefect server on PostgreSQL healthy after {time.monotonic() - started:.1f} s")
        yield api, {**env, "PREFECT_API_URL": api}, postgres_server.url(database)
    finally:
        _stop(server)
    # The server really used PostgreSQL: no SQLite database appeared in its home.
    assert not (workdir / "prefect-home" / "prefect.db").exists(), _tail(log)


def test_one_generation_with_store_and_prefect_server_on_postgresql(prefect_on_postgres, postgres_url, tmp_path):
    api, env, prefect_database = prefect_on_postgres
    store_url = postgres_url()
    # 5 fit iterations: this test is about where the state lives and where work runs, not about the fit.
    # Labelling and the MD walkers fan out on a temporary Dask cluster, whose workers report to the server.
    settings = {**TINY_CAMPAIGN, "store": store_url, "training": {**TINY_CAMPAIGN["training"], "maxiter": 5},
                "stop": {"max_generations": 1, "converged_fraction": None},
                "execution": {"task_runner": "dask", "workers": 2}}
    config_path = tmp_path / "campaign.yaml"
    config_path.write_text(yaml.safe_dump(settings))

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flows.active_learning", "--config", str(config_path)],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=CAMPAIGN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    print(f"campaign (1 generation) on PostgreSQL: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"

    config = CampaignConfig.load(config_path)
    [record] = load_records(config.workdir / "generations")
    assert not (config.workdir / "structures.db").exists()  # the store is the PostgreSQL database

    # The labels are in PostgreSQL: the bootstrap set (generation 0) and the frames generation 0
    # selected and labelled for generation 1, every one an EMT label of its own geometry.
    store = StructureStore(store_url, campaign=config.campaign)
    assert store.status_counts() == {"pending": 0, "running": 0, "failed": 0,
                                     "completed": len(config.seeds) * config.bootstrap.per_seed
                                     + record.labels_added}
    assert record.labels_added == len(store.harvest(generation=1)) > 0
    for row in store.harvest():
        assert row.provenance["labeler"] == "EMT"
        atoms = row.frame.atoms.copy()
        atoms.calc = EMT()
        assert row.frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    held_out = StructureStore(store_url, campaign=config.held_out_campaign).status_counts()
    assert held_out["completed"] > 0 and held_out["pending"] == held_out["failed"] == 0

    # The flow runs are in the Prefect server's PostgreSQL database.
    with psycopg2.connect(prefect_database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT flow.name, flow_run.name, flow_run.state_type FROM flow_run "
                       "JOIN flow ON flow.id = flow_run.flow_id")
        runs = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM task_run WHERE name LIKE 'label%' AND state_type = 'COMPLETED'")
        [[label_runs]] = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM task_run WHERE name ~ '^explore walker [0-9]+$' "
                       "AND state_type = 'COMPLETED'")  # not the subflow's own task run, "explore walkers-…"
        [[walker_runs]] = cursor.fetchall()
    states = {(flow, state) for flow, _, state in runs}
    assert ("active-learning", "COMPLETED") in states and ("generation", "COMPLETED") in states, runs
    assert ("explore walkers", "COMPLETED") in states and ("label", "COMPLETED") in states, runs
    assert [name for flow, name, _ in runs if flow == "generation"] == ["generation 0"]
    assert label_runs >= 3  # one per structure: held-out set, bootstrap set, generation 0's selection
    assert walker_runs == len(md_walker_indices(config)) > 0  # one task per MD walker
