"""Export never overwrites what it did not write (issue 14.7)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mlip_autopipec.data.export import ExportItem, ExportTargetError, export_dataset
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.ingest import ingest_file
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def items(shared_data):
    frames = [f for _, f in read_labelled_frames(shared_data / "Cu-I.extxyz") if isinstance(f, LabelledFrame)][:10]
    return [ExportItem(frame=frame, group=f"g{index}") for index, frame in enumerate(frames)]


def test_a_users_own_files_are_refused_and_left_alone(tmp_path, items):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"my": "own manifest"}')
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportTargetError, match=r"out: holds files this export did not write "
                                                r"\(manifest.json, notes.txt\).*--overwrite"):
        export_dataset(items, out, formats=["extxyz"])
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.txt"]
    assert (out / "manifest.json").read_text() == '{"my": "own manifest"}'

    manifest = export_dataset(items, out, formats=["extxyz"], overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and manifest.counts["train"] + manifest.counts["test"] == 10


def test_an_earlier_export_is_replaced_and_its_stale_files_removed(tmp_path, items):
    out = tmp_path / "out"
    export_dataset(items, out, formats=["extxyz", "pacemaker"])
    assert (out / "train.pckl.gzip").is_file()
    manifest = export_dataset(items, out, formats=["extxyz"])  # no --overwrite needed: all ours
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.extxyz", "train.extxyz"]
    assert DatasetManifest.load(out).digest == manifest.digest


def test_the_cli_refuses_before_anything_starts(tmp_path, shared_data):
    store = tmp_path / "s.db"
    ingest_file(StructureStore(store), shared_data / "Cu-I.extxyz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("my notes")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flows.export", "--store", str(store), "--out", str(out)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: {out}: holds files this export did not write (manifest.json); choose an empty or new directory, "
        "or pass --overwrite to write beside them (files named manifest.json, train.*, test.* are replaced)"]
    assert (out / "manifest.json").read_text() == "my notes"
    assert time.monotonic() - started < 60  # no server was started or waited for
