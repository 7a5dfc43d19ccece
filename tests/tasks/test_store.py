"""ingest_and_export_task: the store and the dataset of ingest_file_task per file then export_task."""

import json

import pytest
from prefect import flow

from mlip_autopipec.data.export import ExportTargetError
from mlip_autopipec.store import StructureStore
from tasks.store import export_task, ingest_and_export_task, ingest_file_task

FORMATS = ["extxyz", "pacemaker", "mace"]


def _written(manifest_path):
    """Every file of an export directory; the manifest without the store's path (each run has its own)."""
    directory = manifest_path.parent
    files = {path.name: path.read_bytes() for path in directory.iterdir() if path.name != "manifest.json"}
    manifest = json.loads(manifest_path.read_text())
    manifest["source"].pop("store")
    return files, manifest


def test_ingest_and_export_writes_what_ingest_then_export_writes(tmp_path, shared_data):
    bad = tmp_path / "bad.extxyz"
    bad.write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 '
                   'pbc="T T T"\nCu 0 0 0 0 0 0\nCu 0.1 0 0 0 0 0\n')
    paths = [str(shared_data / "Cu-I.extxyz"), str(bad), str(shared_data / "ethanol-revMD17.extxyz")]

    @flow
    def both_ways():
        together = ingest_and_export_task(str(tmp_path / "a.db"), paths, "cu", "ingest", 0, 0.5,
                                          str(tmp_path / "a"), 0.2, 3, FORMATS)
        reports = [ingest_file_task(str(tmp_path / "b.db"), path, "cu", "ingest", 0, 0.5) for path in paths]
        return together, reports, export_task(str(tmp_path / "b.db"), "cu", str(tmp_path / "b"), 0.2, 3, FORMATS)

    (report, dataset), reports, reference = both_ways()
    assert report.files == reports
    assert [(p.file, p.frame, p.field) for p in report.problems] == [(str(bad), 0, "positions")]
    assert dataset.digest == reference.digest and dataset.counts == reference.counts
    assert _written(tmp_path / "a" / "manifest.json") == _written(tmp_path / "b" / "manifest.json")
    assert StructureStore(tmp_path / "a.db", campaign="cu").status_counts() == \
        StructureStore(tmp_path / "b.db", campaign="cu").status_counts()


def test_an_export_directory_export_would_refuse_is_refused_before_anything_is_stored(tmp_path, shared_data):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    @flow
    def ingest_and_export():
        return ingest_and_export_task(str(tmp_path / "structures.db"), [str(shared_data / "Cu-I.extxyz")], "cu",
                                      "ingest", 0, 0.5, str(out), 0.1, 0, ["extxyz"])

    with pytest.raises(ExportTargetError, match="notes.txt"):
        ingest_and_export()
    assert not (tmp_path / "structures.db").exists()
