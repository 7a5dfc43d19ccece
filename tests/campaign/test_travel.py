"""What campaign workers exchange through object storage: names, matching generations, scratch directories."""

from pathlib import Path

import pytest

from mlip_autopipec.backends.base import PotentialArtifact
from mlip_autopipec.campaign import travel
from mlip_autopipec.files import sha256_file
from mlip_autopipec.storage import ObjectStore


def _generation(directory: Path, content: str, initial: str | None = None) -> PotentialArtifact:
    directory.mkdir(parents=True)
    (directory / "potential.yaml").write_text(content)
    artifact = PotentialArtifact(backend="pacemaker", elements=["Cu"], files={"potential_yaml": "potential.yaml"},
                                 digests={"potential_yaml": sha256_file(directory / "potential.yaml")},
                                 version="test", dataset_digest="d" * 64, config_digest="c" * 64,
                                 initial_potential=initial)
    artifact.save(directory)
    return artifact


def test_a_named_generation_matches_only_the_same_dataset_config_and_start(tmp_path):
    objects = ObjectStore((tmp_path / "storage").as_uri())
    artifact = _generation(tmp_path / "gen-001", "potential 1", initial="i" * 64)
    name = travel.generation_name("cu-demo", 1)
    assert name == "cu-demo/generations/gen-001" and travel.dataset_name("cu-demo", 1) == "cu-demo/datasets/gen-001"
    assert travel.matching_generation(objects, name, "d" * 64, "c" * 64, "i" * 64) is None  # nothing named yet
    tree = objects.put_tree(artifact.generation_dir).digest
    objects.set_name(name, tree)
    assert travel.matching_generation(objects, name, "d" * 64, "c" * 64, "i" * 64) == tree
    for other in (("x" * 64, "c" * 64, "i" * 64), ("d" * 64, "x" * 64, "i" * 64), ("d" * 64, "c" * 64, None)):
        assert travel.matching_generation(objects, name, *other) is None
    assert travel.tree_artifact(objects, tree).digest == artifact.digest
    assert travel.tree_bytes(objects, tree) == sum(p.stat().st_size for p in artifact.generation_dir.iterdir())


def test_a_starting_generation_travels_as_its_named_tree_or_is_uploaded(tmp_path):
    objects = ObjectStore((tmp_path / "storage").as_uri())
    artifact = _generation(tmp_path / "run" / "generations" / "gen-000", "potential 0")
    uploaded = travel.generation_tree(objects, "cu", artifact)  # trained before storage: uploaded now
    assert objects.tree_files(uploaded).keys() == {"artifact.json", "potential.yaml"}
    (artifact.generation_dir / "report").mkdir()
    (artifact.generation_dir / "report" / "report.md").write_text("published")
    published = objects.put_tree(artifact.generation_dir).digest
    objects.set_name(travel.generation_name("cu", 0), published)
    assert travel.generation_tree(objects, "cu", artifact) == published  # the name's tree, not a new upload
    other = _generation(tmp_path / "elsewhere" / "gen-000", "another potential 0")
    assert travel.generation_tree(objects, "cu", other) not in (uploaded, published)  # the name holds another


def test_a_scratch_directory_lies_under_the_worker_scratch_and_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv(travel.SCRATCH_VARIABLE, str(tmp_path / "scratch"))
    with travel.scratch_directory("label-") as scratch:
        assert scratch.parent == tmp_path / "scratch" and scratch.name.startswith("label-")
        (scratch / "jobs").mkdir()
        (scratch / "jobs" / "worker.log").write_text("x")
    assert list((tmp_path / "scratch").iterdir()) == []
    with pytest.raises(RuntimeError), travel.scratch_directory("label-") as scratch:
        raise RuntimeError("a failed labelling")
    assert not scratch.exists()
    with pytest.raises(RuntimeError) as caught, travel.scratch_directory("train-", keep_on_failure=True) as scratch:
        (scratch / "log.txt").write_text("the fit diverged")
        raise RuntimeError("a failed training")
    assert (scratch / "log.txt").read_text() == "the fit diverged"  # kept for inspection, and said where
    assert caught.value.__notes__ == [f"the attempt's files are kept in {scratch}"]
