"""A campaign that hands its labelling to the DFT pool and its training to the GPU pool, for real,
on loopback only.

The server, setup and `prefect deploy` of test_service.py (the package's `service` fixture, shared
with test_service.py), then a dft-pool and a gpu-pool process worker and `python -m flows.active_learning`
in a subprocess against that server, with `dispatch: {labeling_deployment: label/dft,
training_deployment: train-generation/gpu}` in a one-generation tiny campaign. Every label is made by
a run of label/dft on the dft worker (the held-out set, generation 0's bootstrap and the structures
generation 0 selected) and the generation is trained by a run of train-generation/gpu on the gpu
worker. A few minutes on 2 cores; every process it starts is stopped at the end.
"""

from __future__ import annotations

import copy
import subprocess
import time

import pytest
import yaml

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import load_records
from mlip_autopipec.store import Status, StructureStore
from tests.conftest import PROJECT_ROOT
from tests.deployments.test_service import PYTHON, _client, _stop, _tail
from tests.flows.test_active_learning import TINY_CAMPAIGN

pytestmark = pytest.mark.slow

CAMPAIGN_TIMEOUT_S = 540


def test_a_campaign_hands_labelling_and_training_to_their_pools(service):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

    assert {"label/dft", "train-generation/gpu"} <= set(service.deployed), service.deployed
    settings = copy.deepcopy(TINY_CAMPAIGN)
    # 5 fit iterations: this test is about where the steps run, not about the fit.
    settings["training"]["maxiter"] = 5
    settings.update(campaign="cu-dispatch", workdir="run",
                    stop={"max_generations": 1, "converged_fraction": None},
                    dispatch={"labeling_deployment": "label/dft", "training_deployment": "train-generation/gpu",
                              "timeout_s": 300})
    path = service.workdir / "dispatch" / "campaign.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(settings))
    config = CampaignConfig.load(path)

    worker_log = service.workdir / "dispatch-worker.log"
    gpu_worker_log = service.workdir / "dispatch-gpu-worker.log"
    campaign_log = service.workdir / "dispatch-campaign.log"
    worker_env = {**service.env, "MLIP_AUTOPIPEC_ROOT": str(PROJECT_ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    workers = []
    for pool, log_path in (("dft-pool", worker_log), ("gpu-pool", gpu_worker_log)):
        with open(log_path, "wb") as log:
            workers.append(subprocess.Popen([PYTHON, "-m", "prefect", "worker", "start", "--pool", pool,
                                             "--name", f"test-dispatch-{pool}"], cwd=service.workdir,
                                            env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
    try:
        started = time.monotonic()
        with open(campaign_log, "wb") as log:
            campaign = subprocess.Popen([PYTHON, "-m", "flows.active_learning", "--config", str(path)],
                                        cwd=PROJECT_ROOT, env=service.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = campaign.wait(timeout=CAMPAIGN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _stop(campaign)
        service.seconds["dispatched campaign"] = time.monotonic() - started
        assert returncode == 0, (f"campaign exited {returncode}:\n{_tail(campaign_log)}\n"
                                 f"worker log:\n{_tail(worker_log)}")

        with _client(service) as client:
            deployment = client.read_deployment_by_name("label/dft")
            label_runs = [run for run in client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment.id])))  # the package's server: others' runs too
                if run.parameters["campaign"] in (config.campaign, config.held_out_campaign)]
            training = client.read_deployment_by_name("train-generation/gpu")
            training_runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[training.id])))
            campaign_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter())
    finally:
        for worker in workers:
            _stop(worker)

    # held-out set, bootstrap (generation 0), the structures generation 0 selected (generation 1)
    assert len(label_runs) == 3, [(run.name, run.parameters) for run in label_runs]
    assert all(run.state.is_completed() and run.work_pool_name == "dft-pool" for run in label_runs)
    assert sorted(run.parameters["generation"] for run in label_runs
                  if run.parameters["campaign"] == config.campaign) == [0, 1]
    worker_text = worker_log.read_text()
    assert all(f"Flow run '{run.name}'" in worker_text for run in label_runs)  # this worker ran them
    # The campaign ran in the subprocess against the same server and finished.
    assert any(run.flow_id != label_runs[0].flow_id and run.name == "generation 0" and run.state.is_completed()
               for run in campaign_runs)

    # The generation was trained by one run on the gpu worker, into the campaign's generations.
    assert [run.parameters["generation"] for run in training_runs] == [0]
    assert training_runs[0].state.is_completed() and training_runs[0].work_pool_name == "gpu-pool"
    assert f"Flow run '{training_runs[0].name}'" in gpu_worker_log.read_text()

    [record] = load_records(config.workdir / "generations")
    assert record.potential == str(config.workdir / "generations" / "gen-000" / "artifact.json")
    store = StructureStore(config.store_url, campaign=config.campaign)
    labelled = store.harvest()
    assert labelled and all(row.provenance["labeler"] == "EMT" for row in labelled)
    assert record.generation == 0 and record.labels_total == len(labelled)
    assert record.labels_added == len(store.harvest(generation=1)) > 0
    assert record.labels_failed == sum(1 for _ in store.select(Status.FAILED, generation=1))
    assert record.training_structures + record.labels_added <= len(labelled)
    held_out = StructureStore(config.store_url, campaign=config.held_out_campaign)
    assert held_out.status_counts()["completed"] == 6  # 2 seeds x 1 temperature x 3 snapshots
    assert "labelling run" in campaign_log.read_text()  # the campaign logged each dispatched run
