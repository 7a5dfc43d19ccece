"""Publishing never replaces a block that describes another potential; the same potential again
updates its block; the block and report say which energy the errors were computed against."""

import uuid

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
