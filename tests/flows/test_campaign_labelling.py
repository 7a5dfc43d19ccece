"""The campaign's in-process labelling on a Dask cluster (`execution: {task_runner: dask}`)."""

import json

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from flows.active_learning import label_structures
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.campaign.test_config_and_records import MINIMAL
from tests.labeling.conftest import fcc_cell


def test_a_campaign_labels_on_a_temporary_dask_cluster(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(MINIMAL + yaml.safe_dump({"execution": {"task_runner": "dask", "workers": 2},
                                              "labeling": {"workers": 2, "timeout_s": 120, "calculator": {
                                                  "factory": "emt", "kwargs": {"asap_cutoff": False}}}}))
    settings = CampaignConfig.load(path)
    store = StructureStore(settings.store_url, campaign=settings.campaign)
    store.add([NewStructure(LabelledFrame(fcc_cell("Cu", seed=seed), None, None), "md", status=Status.PENDING,
                            generation=1) for seed in range(3)])
    store.add([NewStructure(LabelledFrame(fcc_cell("Cu", seed=9), None, None), "md", status=Status.PENDING,
                            generation=2)])

    result = label_structures(settings, settings.campaign, generation=1)

    assert result.completed == 3 and result.failed == 0
    assert sorted(result.completed_ids) == sorted(row.id for row in store.select(Status.COMPLETED))
    assert store.status_counts()["completed"] == 3 and store.status_counts()["pending"] == 1  # generation 2 waits
    assert all(row.provenance["labeler"] == "EMT" for row in store.select(Status.COMPLETED))
    assert (settings.workdir / "labeling" / settings.campaign).is_dir()
    # The label flow run Prefect recorded holds the campaign file's path, not the labeler's settings.
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["label"])))
    recorded = [run.parameters for run in runs if run.parameters.get("campaign_file") == settings.file]
    assert len(recorded) == 1 and "asap_cutoff" not in json.dumps(recorded[0])
    assert recorded[0].get("calculator") is None and recorded[0].get("slurm") is None
