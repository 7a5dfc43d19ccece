"""The direct_sample flow end to end on real Cu DFT frames (Cu-I), against the session's Prefect server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import ase.io
import numpy as np
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import direct_sample as direct_sample_flow
from tests.conftest import PROJECT_ROOT
from tests.validation.test_report import assert_real_png


def _latest_artifact(key: str):
    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1]
    return asyncio.run(read())


def test_flow_picks_labelled_frames_from_every_cluster(shared_data, tmp_path, capsys):
    source = shared_data / "Cu-I.extxyz"
    output = tmp_path / "picked" / "cu.extxyz"
    args = ["--input", str(source), "--out", str(output), "--n-clusters", "8", "--n-select", "12",
            "--seed", "1", "--key", "cu-i direct"]
    assert direct_sample_flow.main(args) == 0
    pool = ase.io.read(source, ":")
    picked = ase.io.read(output, ":")
    summary = json.loads((tmp_path / "picked" / "cu.extxyz.clusters.json").read_text())
    assert "picked 12 of 105 structures from 8 clusters" in capsys.readouterr().out

    assert len(picked) == 12 and summary["frames"] == len(pool) == sum(summary["cluster_sizes"])
    assert summary["clusters"] == 8 and sum(summary["picked_per_cluster"]) == 12
    clusters = [atoms.info["direct_cluster"] for atoms in picked]
    assert sorted(clusters[:8]) == list(range(8))  # every cluster before any repeat
    for atoms, pick in zip(picked, summary["picks"]):
        original = pool[int(atoms.info["direct_source"].split(":")[1])]
        assert atoms.info["direct_source"] == pick["source"]
        assert atoms.get_potential_energy() == original.get_potential_energy()
        np.testing.assert_allclose(atoms.get_forces(), original.get_forces(), atol=1e-6)
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-6)
    assert_real_png(tmp_path / "picked" / "cu.extxyz.pca.png")

    table = _latest_artifact("cu-i-direct-clusters")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["structures"] for row in rows] == summary["cluster_sizes"]


def test_cli_help_and_bad_input(tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "flows.direct_sample", "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--n-clusters" in done.stdout and "--n-select" in done.stdout
    missing = tmp_path / "missing.extxyz"
    assert direct_sample_flow.main(["--input", str(missing), "--out", str(tmp_path / "o.extxyz"),
                                    "--n-clusters", "2"]) == 1
    assert "missing.extxyz" in capsys.readouterr().err
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("2\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3\nCu 0 0 0\nCu 1.5 x 1.5\n")
    assert direct_sample_flow.main(["--input", str(garbage), "--out", str(tmp_path / "o.extxyz"),
                                    "--n-clusters", "2"]) == 1
    assert "garbage.extxyz: frame 0: file: cannot parse" in capsys.readouterr().err
    assert not (tmp_path / "o.extxyz").exists()
