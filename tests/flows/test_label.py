import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import label as label_flow
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
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
