"""What a campaign's steps hand on, as small typed values (paths and numbers, never structures):
what preparing the campaign added, the exploration's files and statistics, what selection queued,
what labelling did, and the step results a generation's record is made of."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from mlip_autopipec.labeling import LabelReport


class Preparation(BaseModel):
    """What `steps.prepare` added: generation 0's rows and the held-out set's, and the held-out MD
    runs that failed every attempt and the snapshots it rejected."""

    model_config = ConfigDict(frozen=True)

    bootstrap_added: int
    held_out_added: int
    held_out_problems: list[str]


class ExplorationSummary(BaseModel):
    """What a generation's exploration left: its frame files and their uncertainty statistics."""

    trajectories: list[str]
    walkers: int
    frames: int
    stopped_early: int
    fraction_below_gamma_lower: float
    max_gamma_median: float | None
    max_gamma_max: float | None


class QueueSummary(BaseModel):
    """What selection chose and what the outbox did with it."""

    candidates: int
    selected: int
    queued: int
    skipped_exact: int
    skipped_near: int


class LabelCounts(BaseModel):
    """What a labelling step did: the counts of the labelling task's or the label flow's report, or
    a dispatched run's counts read from the store (then with the run's id)."""

    completed: int
    failed: int
    completed_ids: list[int] = []
    flow_run_id: str | None = None

    @classmethod
    def of(cls, report: LabelReport) -> LabelCounts:
        return cls(completed=len(report.completed), failed=len(report.failed), completed_ids=list(report.completed))


class GenerationSteps(BaseModel):
    """A generation's step results as its flow collected them: what its record is made of."""

    generation: int
    potential: str  # artifact.json of the generation's potential
    potential_digest: str
    training_structures: int
    held_out_metrics: dict[str, float]
    test_metrics: dict[str, float]
    explored: ExplorationSummary
    queued: QueueSummary
    labels: LabelCounts
    step_seconds: dict[str, float]

