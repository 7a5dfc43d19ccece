import json

import pytest
from ase.calculators.emt import EMT
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import action_quality as action_quality_flow
from mlip_autopipec.sampling import run_sampling
from tests.sampling.structures import adatom_on_cu111, rules


def test_action_quality_cli_prints_and_publishes_the_counts(tmp_path, capsys):
    run_dir = tmp_path / "adatom-walk"
    sampling = rules(rigid_translate={"min_step": 1.0, "max_step": 1.8}, jitter={"sigma": 0.1},
                     pipeline={"trigger": {"max_force": 1.0}})
    run_sampling(adatom_on_cu111(), EMT(), sampling, run_dir, steps=8, seed=1)
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]

    assert action_quality_flow.main(["--run-dir", str(run_dir)]) == 0
    printed = capsys.readouterr().out.splitlines()
    for action in ("rigid_translate", "jitter", "all"):
        mine = [s for s in steps if action in ("all", s["action"])]
        row = next(line.split() for line in printed if line.startswith(action + " "))
        assert row[1:4] == [str(len(mine)), str(sum(s["accepted"] for s in mine)),
                            str(sum(not s["accepted"] for s in mine))]
    assert (run_dir / "action_quality.md").read_text().startswith("# Action quality: adatom-walk")

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["adatom-walk-action-quality", "adatom-walk-action-quality-report"])))
    table = next(a for a in artifacts if a.type == "table")
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    assert [r["attempts"] for r in rows][-1] == len(steps)
    markdown = next(a for a in artifacts if a.type == "markdown")
    assert str((run_dir / "action_quality.png").resolve()) in markdown.data


def test_action_quality_cli_names_a_missing_run(tmp_path, capsys):
    assert action_quality_flow.main(["--run-dir", str(tmp_path)]) == 1
    assert "steps.jsonl does not exist" in capsys.readouterr().err


def test_action_quality_help(capsys):
    with pytest.raises(SystemExit) as exited:
        action_quality_flow.main(["--help"])
    assert exited.value.code == 0 and "--run-dir" in capsys.readouterr().out
