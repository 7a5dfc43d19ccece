"""Publishing never replaces a block that describes another potential; the same potential again
updates its block; the block and report say which energy the errors were computed against."""

import uuid
from pathlib import Path

import pytest
from prefect import flow

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.files import sha256_file
from mlip_autopipec.validation.results import Evaluation
from tasks.blocks import PotentialGeneration
from tasks.publish import BlockConflict, publish_task

EVALUATION = Evaluation(
    split="test", energy_compared_with="energy_corrected (energy where a frame has none)",
    metrics={"energy_rmse_mev_per_atom": 1.5, "energy_mae_mev_per_atom": 1.0,
             "forces_rmse_mev_per_angstrom": 40.0, "forces_mae_mev_per_angstrom": 30.0, "frames": 4.0},
    gamma=None, per_element={}, species_without_gamma={}, skipped_frames=[], worst_frames=[], plots={})


def generation(root, content: str) -> str:
    """A generation directory whose potential file holds `content` (so its digest differs)."""
    directory = root / "generations" / "gen-000"
    directory.mkdir(parents=True)
    (directory / "potential.yaml").write_text(content)
    artifact = PotentialArtifact(backend="pacemaker", elements=["Cu"], files={"potential_yaml": "potential.yaml"},
                                 digests={"potential_yaml": sha256_file(directory / "potential.yaml")},
                                 version="test", dataset_digest=content, config_digest="c")
    return str(artifact.save(directory))


@flow
def publish(campaign: str, artifact: str, name: str | None = None) -> str:
    return publish_task(campaign, artifact, EVALUATION, name)


def test_two_runs_on_different_data_get_their_own_blocks(tmp_path):
    campaign = f"cu-{uuid.uuid4().hex[:8]}"
    first = generation(tmp_path / "run-a", "potential A")
    second = generation(tmp_path / "run-b", "potential B")
    first_block = publish(campaign, first, name=f"{campaign}-a")
    second_block = publish(campaign, second, name=f"{campaign}-b")
    assert first_block != second_block
    assert PotentialGeneration.load(first_block).potential_digest == PotentialArtifact.load(first).digest
    assert PotentialGeneration.load(second_block).potential_digest == PotentialArtifact.load(second).digest


def test_a_block_of_another_potential_is_never_replaced(tmp_path):
    campaign = f"cu-{uuid.uuid4().hex[:8]}"
    first = generation(tmp_path / "run-a", "potential A")
    block = publish(campaign, first)
    assert block == f"{campaign}-gen-000"
    assert publish(campaign, first) == block  # the same potential again: its block is updated

    other = generation(tmp_path / "run-b", "potential B")
    with pytest.raises(BlockConflict, match=f"block {block} already holds another potential"):
        publish(campaign, other)
    kept = PotentialGeneration.load(block)
    assert kept.potential_digest == PotentialArtifact.load(first).digest
    assert kept.energy_compared_with.startswith("energy_corrected")


def test_a_block_whose_run_was_deleted_is_replaced(tmp_path):
    """Delete the run directory, train again: the old block describes nothing that exists any more."""
    import shutil

    campaign = f"cu-{uuid.uuid4().hex[:8]}"
    first = generation(tmp_path / "run-a", "potential A")
    block = publish(campaign, first)
    shutil.rmtree(tmp_path / "run-a")
    second = generation(tmp_path / "run-a", "potential B")
    assert publish(campaign, second) == block
    assert PotentialGeneration.load(block).potential_digest == PotentialArtifact.load(second).digest


# -- issue 22: per-element errors and the species without γ in the published report ----------------

PER_ELEMENT = {"Cu": {"atoms": 93, "forces_rmse_mev_per_angstrom": 35.0, "forces_mae_mev_per_angstrom": 25.0},
               "Ni": {"atoms": 3, "forces_rmse_mev_per_angstrom": 120.5, "forces_mae_mev_per_angstrom": 90.0}}


def _two_element_artifact(**fields) -> PotentialArtifact:
    return PotentialArtifact(**{"backend": "pacemaker", "elements": ["Cu", "Ni"], "files": {}, "digests": {},
                                "version": "0.4", "dataset_digest": "d" * 64, "config_digest": "c" * 64, **fields})


def test_the_report_names_species_without_gamma_and_errors_per_element():
    from tasks.publish import report_markdown

    artifact = _two_element_artifact(species_without_gamma={"Ni": "6 training environments for 10"})
    text = report_markdown("c", 0, artifact, EVALUATION.model_copy(update={"per_element": PER_ELEMENT}), "c-gen-000")
    assert "## Species without γ yet" in text and "| Ni | 6 training environments for 10 |" in text
    assert "## Forces per element" in text and "| Ni | 3 | 120.50 | 90.00 |" in text


def test_no_such_sections_when_every_species_has_gamma_or_the_evaluation_is_older():
    from tasks.publish import report_markdown

    text = report_markdown("c", 1, _two_element_artifact(), EVALUATION, "c-gen-001")
    assert "without γ" not in text and "per element" not in text


def test_the_report_title_names_the_backend_once():
    from tasks.publish import report_markdown

    text = report_markdown("c", 0, _two_element_artifact(version="pacemaker 0.4.0rc1"), EVALUATION, "c-gen-000")
    assert text.splitlines()[0] == "# c: generation 0 (pacemaker 0.4.0rc1)"
    text = report_markdown("c", 0, _two_element_artifact(version="0.4"), EVALUATION, "c-gen-000")
    assert text.splitlines()[0] == "# c: generation 0 (pacemaker 0.4)"


# -- issue 17: a generation published with storage travels -----------------------------------------

@flow
def publish_to(campaign: str, artifact: str, storage: str) -> str:
    return publish_task(campaign, artifact, EVALUATION, storage=storage)


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path):
    if request.param == "file":
        return (tmp_path / "bucket").as_uri()
    return request.getfixturevalue("s3_server").bucket()


def test_with_storage_the_block_names_uploaded_objects_and_the_generation_downloads_anywhere(tmp_path, storage):
    import shutil

    from mlip_autopipec.storage import ObjectStore

    campaign = f"Cu {uuid.uuid4().hex[:8]}"
    artifact_file = generation(tmp_path / "run", "potential A")
    (tmp_path / "run" / "generations" / "gen-000" / "report").mkdir()
    (tmp_path / "run" / "generations" / "gen-000" / "report" / "evaluation-test.json").write_text("{}\n")
    block_name = publish_to(campaign, artifact_file, storage)
    original = {path.relative_to(tmp_path / "run"): path.read_bytes()
                for path in (tmp_path / "run").rglob("*") if path.is_file()}
    shutil.rmtree(tmp_path / "run")

    block = PotentialGeneration.load(block_name)
    assert block.storage == storage and block.tree_url == f"{storage}/objects/{block.tree_digest[:2]}/{block.tree_digest}"
    assert ObjectStore(storage).name(f"{campaign.lower().replace(' ', '-')}/generations/gen-000") == block.tree_digest
    assert block.objects["potential_yaml"].endswith(sha256_of(original, "potential.yaml"))
    target = block.download(tmp_path / "elsewhere")
    downloaded = {Path("generations/gen-000") / path.relative_to(target): path.read_bytes()
                  for path in target.rglob("*") if path.is_file()}
    assert downloaded == original  # potential, artifact.json, evaluation JSON and the report written on publish
    assert "report/report.md" in {str(path.relative_to(target)) for path in target.rglob("*")}
    assert PotentialArtifact.load(target).digest == block.potential_digest


def sha256_of(files: dict, name: str) -> str:
    import hashlib

    return hashlib.sha256(next(data for path, data in files.items() if path.name == name)).hexdigest()


def test_the_report_artifact_says_where_the_objects_are(tmp_path):
    from tasks.publish import report_markdown

    artifact_file = generation(tmp_path / "run", "potential A")
    block = PotentialGeneration.load(publish_to("cu-report", artifact_file, (tmp_path / "bucket").as_uri()))
    text = report_markdown("cu-report", 0, PotentialArtifact.load(artifact_file), EVALUATION, "cu-report-gen-000",
                           block)
    assert f"- generation directory (tree manifest): `{block.tree_url}`" in text
    assert f"- potential_yaml: `{block.objects['potential_yaml']}`" in text


def test_an_interrupted_upload_saves_no_block_and_no_name(tmp_path, s3_server, monkeypatch, request):
    """The connection drops while the second file is being sent: ObjectStoreError, and nothing
    (block or names/ pointer) points at the half-uploaded generation."""
    import s3fs

    from mlip_autopipec.storage import ObjectStore, ObjectStoreError

    bucket = s3_server.bucket()
    campaign = f"cu-{uuid.uuid4().hex[:8]}"
    artifact_file = generation(tmp_path / "run", "potential A")
    (tmp_path / "run" / "generations" / "gen-000" / "second.log").write_text("log\n")
    sent = []
    real_put_file = s3fs.S3FileSystem._put_file

    async def dropping_put_file(self, lpath, rpath, *args, **kwargs):
        sent.append(lpath)
        if len(sent) == 2:
            raise ConnectionResetError("connection reset by peer")
        return await real_put_file(self, lpath, rpath, *args, **kwargs)

    # s3fs binds its sync put_file to _put_file when an instance is made: patch, then make new ones
    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", dropping_put_file)
    s3fs.S3FileSystem.clear_instance_cache()
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)
    with pytest.raises(ObjectStoreError, match="failed: connection reset"):
        publish_to(campaign, artifact_file, bucket)
    assert len(sent) >= 2  # the files go in parallel: the others may be sent too
    with pytest.raises(ValueError, match="Unable to find block document"):
        PotentialGeneration.load(f"{campaign}-gen-000")
    assert ObjectStore(bucket).name(f"{campaign}/generations/gen-000") is None


def test_blocks_saved_before_storage_existed_still_load_and_download_locally(tmp_path):
    """A block document without the storage fields (saved by an older version) loads; its
    generation comes from the directory it was trained in."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    artifact_file = generation(tmp_path / "run", "potential old")
    name = f"old-{uuid.uuid4().hex[:8]}"
    block_name = publish(name, artifact_file)
    fields = PotentialGeneration.load(block_name).model_dump(
        exclude={"storage", "tree_digest", "tree_url", "objects"})
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(block_name, "potential-generation")
        client.update_block_document(document.id, BlockDocumentUpdate(data=fields, merge_existing_data=False))
    old = PotentialGeneration.load(block_name)
    assert old.tree_digest is None and old.objects == {}
    assert old.download() == Path(PotentialArtifact.load(artifact_file).generation_dir).resolve()
    copy = old.download(tmp_path / "copy")
    assert (copy / "potential.yaml").read_text() == "potential old"


def test_an_uploaded_generation_is_still_there_when_its_run_is_deleted(tmp_path):
    """Its block is not replaced by another potential: the uploaded one can still be downloaded."""
    import shutil

    campaign = f"cu-{uuid.uuid4().hex[:8]}"
    storage = (tmp_path / "bucket").as_uri()
    block = publish_to(campaign, generation(tmp_path / "run-a", "potential A"), storage)
    shutil.rmtree(tmp_path / "run-a")
    with pytest.raises(BlockConflict, match=f"block {block} already holds another potential"):
        publish_to(campaign, generation(tmp_path / "run-a", "potential B"), storage)
    kept = PotentialGeneration.load(block).download(tmp_path / "kept")
    assert (kept / "potential.yaml").read_text() == "potential A"
