"""What a generation's steps hand on, as small typed values (paths and numbers, never structures):
the exploration's files and statistics, what selection queued, what labelling did, and the step
results a generation's record is made of."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
    """What a labelling step did: the labelling task's report, the label flow's, or a dispatched
    run's counts read from the store (then with the run's id)."""

    model_config = ConfigDict(extra="ignore")

    completed: int
    failed: int
    completed_ids: list[int] = []
    flow_run_id: str | None = None


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

