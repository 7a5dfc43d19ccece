"""What a validation hands on, as small typed values: a generation's evaluation on one split
(`evaluation.evaluate_on_split`) and the summary of a standalone validation (`report.validate_potential`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

Number = int | float  # counts stay int (an atom count printed as "12", not "12.0")


class Evaluation(BaseModel):
    """Errors of a potential on one split, as `evaluate_on_split` writes to report/evaluation-<name>.json."""

    model_config = ConfigDict(frozen=True)

    split: str  # the evaluation's name, e.g. "test" or "held-out"
    metrics: dict[str, float]  # error_metrics, and max_gamma when the potential reports γ
    energy_compared_with: str  # the label energy the potential was fitted to
    gamma: dict[str, Number] | None
    per_element: dict[str, dict[str, Number]]  # force errors per element
    species_without_gamma: dict[str, str]
    skipped_frames: list[dict[str, Any]]
    worst_frames: list[dict[str, Any]]
    plots: dict[str, str]  # name -> PNG path

    def output_files(self) -> list[str]:
        """The files a (possibly cached) evaluation points to."""
        return list(self.plots.values())


class ValidationSummary(BaseModel):
    """The headline of a validation; everything else is in its metrics file."""

    model_config = ConfigDict(frozen=True)

    title: str
    frames: int
    test_set: dict[str, float]
    physical: dict[str, Any] | None  # PhysicalComparison.to_dict(), or {"skipped": why}
    metrics_file: str
    report_file: str
