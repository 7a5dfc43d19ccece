"""The published generation report: per-element force errors and the species without γ yet."""

from __future__ import annotations

from mlip_autopipec.backends import PotentialArtifact
from tasks.publish import report_markdown

EVALUATION = {
    "split": "test", "plots": {}, "worst_frames": [],
    "metrics": {"frames": 3.0, "energy_rmse_mev_per_atom": 1.0, "energy_mae_mev_per_atom": 0.5,
                "forces_rmse_mev_per_angstrom": 40.0, "forces_mae_mev_per_angstrom": 30.0},
    "per_element": {"Cu": {"atoms": 93, "forces_rmse_mev_per_angstrom": 35.0, "forces_mae_mev_per_angstrom": 25.0},
                    "Ni": {"atoms": 3, "forces_rmse_mev_per_angstrom": 120.5, "forces_mae_mev_per_angstrom": 90.0}},
}


def _artifact(**fields) -> PotentialArtifact:
    return PotentialArtifact(backend="pacemaker", elements=["Cu", "Ni"], files={}, digests={}, version="0.4",
                             dataset_digest="d" * 64, config_digest="c" * 64, **fields)


def test_the_report_names_species_without_gamma_and_errors_per_element():
    text = report_markdown("c", 0, _artifact(species_without_gamma={"Ni": "6 training environments for 10"}),
                           EVALUATION, "c-gen-000")
    assert "## Species without γ yet" in text and "| Ni | 6 training environments for 10 |" in text
    assert "## Forces per element" in text and "| Ni | 3 | 120.50 | 90.00 |" in text


def test_no_section_when_every_species_has_gamma_or_the_evaluation_is_older():
    older = {key: value for key, value in EVALUATION.items() if key != "per_element"}
    text = report_markdown("c", 1, _artifact(), older, "c-gen-001")
    assert "without γ" not in text and "per element" not in text
