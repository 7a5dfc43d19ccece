"""The action-quality table's numbers are the counts in steps.jsonl."""

import json

import matplotlib.image
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.sampling import run_sampling
from mlip_autopipec.sampling.action_quality import action_quality, table_markdown, table_text, write_report
from tests.sampling.structures import adatom_on_cu111, rules


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Three actions, min_dist and quality rejections, new and known basins, some triggers."""
    run_dir = tmp_path_factory.mktemp("sampled")
    sampling = rules(rigid_translate={"min_step": 1.0, "max_step": 1.8}, jitter={"sigma": 0.1},
                     push_pull={"min_delta": 0.1, "max_delta": 0.8},
                     pipeline={"validators": ["min_dist", {"name": "quality", "max_force": 3.0}],
                               "trigger": {"max_force": 1.0}})
    run_sampling(adatom_on_cu111(), EMT(), sampling, run_dir, steps=16, seed=5)
    return run_dir


def test_table_counts_equal_the_steps(run_dir):
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    rows = {row["action"]: row for row in action_quality(run_dir)}
    assert set(rows) == {s["action"] for s in steps} | {"all"}
    reasons_seen = set()
    for action, row in rows.items():
        mine = [s for s in steps if action in ("all", s["action"])]
        accepted = [s for s in mine if s["accepted"]]
        assert row["attempts"] == len(mine) and row["accepted"] == len(accepted)
        assert row["rejected"] == len(mine) - len(accepted)
        assert row["rejection_rate"] == pytest.approx(row["rejected"] / len(mine))
        reasons = {}
        for s in mine:
            if not s["accepted"]:
                reasons[s["rejected_by"]] = reasons.get(s["rejected_by"], 0) + 1
        assert row["rejection_reasons"] == reasons
        reasons_seen |= set(reasons)
        new = sum(bool(s.get("new_basin")) for s in accepted)
        assert row["new_basins"] == new
        assert row["new_basin_rate"] == pytest.approx(new / len(accepted) if accepted else 0.0)
        triggered = sum(bool(s.get("triggered_by")) for s in mine)
        assert row["triggered"] == triggered and row["trigger_rate"] == pytest.approx(triggered / len(mine))
        pre = [s["force_pre"]["max"] for s in mine if "force_pre" in s]
        post = [s["force_post"]["max"] for s in accepted]
        assert row["force_pre_mean"] == (pytest.approx(sum(pre) / len(pre)) if pre else None)
        assert row["force_post_mean"] == (pytest.approx(sum(post) / len(post)) if post else None)
    assert reasons_seen == {"min_dist", "quality"}  # the run exercised both validators
    assert rows["all"]["new_basins"] >= 1 and 0 < rows["all"]["triggered"] < rows["all"]["attempts"]


def test_report_files_show_the_same_numbers(run_dir, tmp_path):
    report = write_report(run_dir, tmp_path)
    rows = json.loads((tmp_path / "action_quality.json").read_text())
    assert rows == action_quality(run_dir)
    markdown = (tmp_path / "action_quality.md").read_text()
    assert table_markdown(rows) in markdown
    total = rows[-1]
    assert f"{total['attempts']} attempts, {total['rejected']} rejected" in markdown
    assert table_text(rows).splitlines()[-1].split()[:4] == ["all", str(total["attempts"]), str(total["accepted"]),
                                                             str(total["rejected"])]
    image = matplotlib.image.imread(report["plot"])
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_missing_or_malformed_steps_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="steps.jsonl does not exist"):
        action_quality(tmp_path)
    (tmp_path / "steps.jsonl").write_text('{"id": 0, "action": "jitter"}\n')
    with pytest.raises(ValueError, match=r"steps.jsonl: line 1 lacks field\(s\) accepted, magnitude, unit"):
        action_quality(tmp_path)
    (tmp_path / "steps.jsonl").write_text('{"id": 0\n')
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        action_quality(tmp_path)
