"""python -m flows.render: the command renders a real MD trajectory and publishes what it drew; bad input
and a missing Blender end with a message and exit code 1."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from flows import render as render_flow
from mlip_autopipec.rendering.render import MANIFEST_NAME
from tests.rendering.pictures import assert_real_picture, cu_md_trajectory


@pytest.fixture(scope="module")
def cu_md(shared_data, tmp_path_factory):
    return cu_md_trajectory(shared_data, tmp_path_factory.mktemp("md") / "walker-000.extxyz", frames=4)


def test_command_renders_frames_movie_and_publishes_an_artifact(cu_md, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    out = tmp_path / "render"
    code = render_flow.main(["--input", str(cu_md), "--out", str(out), "--every", "2", "--size", "120x90",
                             "--color-by", "gamma", "--movie", "gif"])
    assert code == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source_frames"] == [0, 2] and manifest["colour_by"] == "gamma"
    for path in manifest["frames"]:
        assert_real_picture(path, (120, 90))
    with Image.open(manifest["movie"]) as movie:
        assert movie.n_frames == 2

    with get_client(sync_client=True) as client:
        [published] = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=["render-walker-000"])))
    assert manifest["movie"] in published.data and manifest["frames"][0] in published.data


@pytest.mark.parametrize("args, message", [
    (["--color-by", "charge"], "frame 0 has no per-atom array 'charge'"),
    (["--size", "12x9"], "out of range"),
    (["--renderer", "blender"], "--blender PATH or set MLIP_BLENDER"),
])
def test_bad_input_exits_1_with_the_reason(cu_md, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("MLIP_BLENDER", raising=False)
    out = tmp_path / "render"
    assert render_flow.main(["--input", str(cu_md), "--out", str(out), *args]) == 1
    assert message in capsys.readouterr().err
    assert not list(out.glob("frame-*.png"))


def test_missing_input_stops_before_any_flow_runs(tmp_path, capsys):
    missing = tmp_path / "nowhere.extxyz"
    assert render_flow.main(["--input", str(missing), "--out", str(tmp_path / "out")]) == 1
    assert f"error: {missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_campaign_task_renders_the_most_uncertain_walker_and_publishes_it(shared_data, cu_md, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    from tasks.rendering import render_most_uncertain_task

    wild = cu_md_trajectory(shared_data, tmp_path / "walker-001.extxyz", frames=2, gamma_scale=3.0)

    @flow
    def generation_report():
        return render_most_uncertain_task([str(cu_md), str(wild)], str(tmp_path / "report"), "test gen 1 walker")

    result = generation_report()
    assert result.trajectory == str(wild.resolve()) and result.colour_by == "gamma"
    assert len(result.frames) == 2
    for path in result.frames:
        assert path.startswith(str(tmp_path / "report" / "most-uncertain"))
        assert_real_picture(path, (480, 360))
    with get_client(sync_client=True) as client:
        [published] = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=["test-gen-1-walker"])))
    assert "colour bar" in published.data and result.movie in published.data
    assert published.data.count("](data:image/png;base64,") == 2  # first and last frame, shown in the UI
