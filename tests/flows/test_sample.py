import json
import subprocess
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import outbox as outbox_flow
from flows import sample as sample_flow
from mlip_autopipec.sampling import structure_to_json
from tests.conftest import PROJECT_ROOT
from tests.sampling.structures import slab_with_adsorbate

RULES = PROJECT_ROOT / "campaigns" / "sampling-rules.yaml"


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sample_cli_resumes_and_its_queue_goes_through_the_outbox(tmp_path, capsys):
    structure = tmp_path / "start.json"
    structure.write_text(json.dumps(structure_to_json(slab_with_adsorbate())))
    run_dir = tmp_path / "run-cu-o2"
    args = ["--out", str(run_dir), "--structure", str(structure), "--config", str(RULES),
            "--quench", "fire", "--quench-fmax", "0.1", "--quench-steps", "100", "--seed", "4"]

    assert sample_flow.main(args + ["--steps", "4"]) == 0
    assert sample_flow.main(args + ["--steps", "7", "--resume", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    steps = read_lines(run_dir / "steps.jsonl")
    assert [s["id"] for s in steps] == list(range(7))
    assert summary["steps_this_run"] == 3
    rejected = sum(not s["accepted"] for s in steps)
    assert f"attempts_total=7 attempts_rejected={rejected} " in out
    assert all(s["quench"]["method"] == "fire" for s in steps if s["accepted"])
    queue = read_lines(run_dir / "dft_queue.jsonl")
    assert [c["id"] for c in summary["candidates"]] == [q["id"] for q in queue] \
        == [f"run-cu-o2-{s['id']:06d}" for s in steps if s.get("triggered_by")]
    assert queue, "the example rules trigger on forces above 2 eV/Å after most actions"
    # fixed atoms never moved, in any structure the walk wrote
    fixed = structure_to_json(slab_with_adsorbate())["fixed"]
    start_positions = [slab_with_adsorbate().positions[i].tolist() for i in fixed]
    for record in queue:
        assert [record["positions"][i] for i in fixed] == start_positions

    outbox_dir = tmp_path / "outbox"
    assert outbox_flow.main(["--queue", str(run_dir / "dft_queue.jsonl"), "--out", str(outbox_dir)]) == 0
    submitted = read_lines(outbox_dir / "dft_submit.jsonl")
    skipped = read_lines(outbox_dir / "dft_skip.jsonl") if (outbox_dir / "dft_skip.jsonl").exists() else []
    assert len(submitted) + len(skipped) == len(queue)
    assert {r["id"] for r in submitted} <= {q["id"] for q in queue} and submitted

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["run-cu-o2-sampling-candidates"])))
    assert any(a.type == "table" and "attempts_total=7" in a.description for a in artifacts)


def test_bad_rules_fail_before_sampling_with_file_and_key(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("jitter: {sigma: 0.1}\npipeline:\n  trigger: {max_forse: 2}\n")
    structure = tmp_path / "start.json"
    structure.write_text(json.dumps(structure_to_json(slab_with_adsorbate())))
    code = sample_flow.main(["--out", str(tmp_path / "run"), "--structure", str(structure),
                             "--config", str(rules), "--steps", "3"])
    assert code == 1
    assert f"error: {rules}: pipeline.trigger.max_forse: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sample_help():
    result = subprocess.run([sys.executable, "-m", "flows.sample", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--out", "--structure", "--config", "--steps", "--target-basins", "--resume", "--model",
                   "--device", "--quench", "--quench-fmax", "--quench-steps", "--seed", "dft_queue.jsonl"):
        assert option in result.stdout
