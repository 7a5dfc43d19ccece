import pytest

from mlip_autopipec.backends.base import PotentialArtifact
from mlip_autopipec.generations import finished_generations, find_matching, generation_index, prepare_next


def _finish(directory, dataset="d1", config="c1", initial=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "potential.yaml").write_text(f"{dataset}{config}")
    artifact = PotentialArtifact(backend="pacemaker", elements=["Cu"], files={"potential_yaml": "potential.yaml"},
                                 digests={"potential_yaml": dataset + config}, version="0.4",
                                 dataset_digest=dataset, config_digest=config, initial_potential=initial)
    artifact.save(directory)
    return artifact


def test_next_generation_follows_the_last_finished_one(tmp_path):
    assert prepare_next(tmp_path).name == "gen-000"
    _finish(tmp_path / "gen-000")
    _finish(tmp_path / "gen-001", dataset="d2")
    (tmp_path / "gen-002").mkdir()  # a crashed attempt: trained into again
    assert prepare_next(tmp_path).name == "gen-002"
    assert [generation_index(a.generation_dir) for a in finished_generations(tmp_path)] == [0, 1]


def test_matching_generation_is_found_by_all_three_digests(tmp_path):
    _finish(tmp_path / "gen-000")
    _finish(tmp_path / "gen-001", initial="p0")
    assert find_matching(tmp_path, "d1", "c1", None).generation_dir.name == "gen-000"
    assert find_matching(tmp_path, "d1", "c1", "p0").generation_dir.name == "gen-001"
    assert find_matching(tmp_path, "d1", "c2", None) is None


def test_a_finished_generation_is_never_overwritten(tmp_path):
    _finish(tmp_path / "gen-000")
    with pytest.raises(FileExistsError, match="never overwritten"):
        prepare_next(tmp_path, index=0)
    with pytest.raises(ValueError, match="not a generation directory"):
        generation_index(tmp_path / "latest")
