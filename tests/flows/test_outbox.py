import json
import subprocess
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import outbox as outbox_flow
from mlip_autopipec.store import StructureStore
from tests.conftest import PROJECT_ROOT
from tests.outbox.test_canonical import random_structure
from tests.outbox.test_outbox import variants, write_queue


def test_outbox_cli_submits_once_and_reports(tmp_path, capsys):
    base = [random_structure(seed) for seed in range(3)]
    exact, nearby = variants(base[0], 0)
    queue = tmp_path / "run" / "dft_queue.jsonl"
    queue.parent.mkdir()
    write_queue(queue, base + exact + [nearby])
    store, out = tmp_path / "structures.db", tmp_path / "outbox"
    args = ["--queue", str(queue), "--store", str(store), "--out", str(out), "--tolerance", "0.05",
            "--campaign", "demo", "--generation", "2"]

    assert outbox_flow.main(args) == 0
    assert "7 candidates: 3 submitted, 3 exact and 1 near duplicates skipped" in capsys.readouterr().out
    submitted = [json.loads(line) for line in (out / "dft_submit.jsonl").read_text().splitlines()]
    assert [r["id"] for r in submitted] == ["c0", "c1", "c2"]
    assert StructureStore(store, campaign="demo").status_counts()["pending"] == 3

    assert outbox_flow.main(args) == 0  # idempotent
    assert "7 candidates: 0 submitted, 6 exact and 1 near" in capsys.readouterr().out
    assert len((out / "dft_submit.jsonl").read_text().splitlines()) == 3
    assert StructureStore(store, campaign="demo").status_counts()["pending"] == 3

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dft-outbox"])))
    assert any(a.type == "table" and "3 submitted" in a.description for a in artifacts)
    assert any("0 submitted" in a.description for a in artifacts)


def test_outbox_help():
    result = subprocess.run([sys.executable, "-m", "flows.outbox", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--queue" in result.stdout and "--tolerance" in result.stdout and "dft_skip.jsonl" in result.stdout
