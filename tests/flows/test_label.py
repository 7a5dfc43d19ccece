import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import label as label_flow
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.travel import SCRATCH_VARIABLE
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.storage import ObjectStore, ObjectStoreError
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.campaign.test_config_and_records import MINIMAL
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell


def test_label_flow_labels_the_store_and_reports_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(PROJECT_ROOT)  # the worker imports the faulty calculator from here
    store = StructureStore(tmp_path / "structures.db", campaign="Cu Ni demo")
    good, bad = (o.id for o in store.add(
        [NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING)
         for atoms in (fcc_cell("Cu"), fcc_cell("Ni"))]))

    code = label_flow.main(["--store", store.url, "--campaign", "Cu Ni demo", "--workers", "2",
                            "--calculator", "tests.labeling.faulty_calculators:Crashing",
                            "--calculator-kwargs", '{"element": "Ni"}', "--max-attempts", "2",
                            "--timeout", "60"])

    assert code == 0  # a failed label is reported, not fatal
    output = capsys.readouterr().out
    assert f"failed: structure {bad} (attempt 2): Crashing worker failed with exit code 1" in output
    assert "Crashing: 1 completed, 1 failed, 1 retried" in output
    assert store.get(good).status is Status.COMPLETED and store.get(bad).status is Status.FAILED
    assert (tmp_path / "labeling" / "Cu-Ni-demo" / f"structure-{bad}" / "worker.log").is_file()

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["cu-ni-demo-labels"])))
    assert artifact.type == "table" and "1 completed, 1 failed" in artifact.description
    assert f'"structure": {bad}' in str(artifact.data).replace("'", '"')


def test_a_label_run_with_storage_fetches_the_campaign_file_and_leaves_no_scratch(tmp_path, monkeypatch):
    """What a campaign on another machine dispatches: no path of its own, only storage and digests."""
    config_path = tmp_path / "campaign" / "c.yaml"
    config_path.parent.mkdir()
    config_path.write_text(MINIMAL + "labeling: {calculator: {factory: emt}, timeout_s: 60}\n")
    config = CampaignConfig.load(config_path)
    objects = ObjectStore((tmp_path / "storage").as_uri())
    objects.put_file(config_path)
    config_path.unlink()  # the labelling worker never sees the campaign's disk
    store = StructureStore(tmp_path / "structures.db", campaign="c")
    [row] = [o.id for o in store.add([NewStructure(LabelledFrame(fcc_cell("Cu"), None, None), "md",
                                                   status=Status.PENDING)])]
    monkeypatch.setenv(SCRATCH_VARIABLE, str(tmp_path / "scratch"))
    report = label_flow.label(store.url, campaign="c", storage=objects.url, campaign_digest=config.digest,
                              labeling_digest=config.labeling.digest())
    assert report.completed == [row] and store.get(row).status is Status.COMPLETED
    assert list((tmp_path / "scratch").iterdir()) == []  # job directories and the file went with the run
    with pytest.raises(ObjectStoreError, match=f"no such object \\(expected digest {'0' * 64}\\)"):
        label_flow.label(store.url, campaign="c", storage=objects.url, campaign_digest="0" * 64)


def test_usage_errors_exit_2_and_help_works(tmp_path):
    with pytest.raises(SystemExit) as missing_store:
        label_flow.main(["--store", str(tmp_path / "nothing.db")])
    with pytest.raises(SystemExit) as bad_kwargs:
        label_flow.main(["--store", str(tmp_path / "nothing.db"), "--calculator-kwargs", "{oops"])
    assert missing_store.value.code == bad_kwargs.value.code == 2
    assert not (tmp_path / "nothing.db").exists()  # a typo must not create an empty store

    result = subprocess.run([sys.executable, "-m", "flows.label", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: python -m flows.label" in result.stdout
