"""How a campaign asks for labels: one request made from the campaign file (the labelling task's,
the label flow's and the `label` deployment's parameters alike), and the counts a dispatched run
leaves in the store. The label flow gets the campaign file's path and digest, not the labeler's
settings: Prefect records a flow run's parameters."""

from __future__ import annotations

import re

from pydantic import BaseModel

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.results import LabelCounts
from mlip_autopipec.store import Status, StructureStore


def slug(text: str) -> str:
    """Prefect keys, block names and per-campaign directories: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "default"


class LabelRequest(BaseModel):
    """Label the pending rows of `campaign` (of one generation, or all with None)."""

    store: str
    calculator: dict
    campaign: str
    generation: int | None
    timeout_s: float
    max_attempts: int
    workers: int
    workdir: str | None  # None: a scratch directory of the labelling worker (with storage)
    recover_running: bool = False
    slurm: dict | None = None  # labeling.slurm (SlurmSettings) with executor: slurm: SLURM batch jobs
    campaign_file: str | None = None  # where calculator and slurm come from (CampaignConfig.file)
    labeling_digest: str | None = None  # LabelingSettings.digest() of that file's labeling section
    storage: str | None = None  # with storage: the campaign file is the object `campaign_digest` there
    campaign_digest: str | None = None

    def flow_parameters(self) -> dict:
        """The label flow's arguments: the campaign file instead of the calculator and SLURM settings;
        unset optional keys are left out (a deployment registered before they existed takes the rest)."""
        unset = {key for key in ("workdir", "campaign_file", "storage", "campaign_digest") if getattr(self, key) is None}
        return self.model_dump(exclude={"calculator", "slurm"} | unset)


def label_request(config: CampaignConfig, campaign: str, generation: int | None,
                  recover_running: bool = False, dispatched: bool = False) -> LabelRequest:
    """The campaign's labelling settings for `campaign` (the campaign's own name or its held-out set's).
    Job directories go into the campaign directory: a PostgreSQL store has no directory to put them
    beside. A `dispatched` request of a campaign with `storage:` names no path of the campaign's
    machine: the label run fetches the campaign file from storage by digest and works in its own scratch."""
    label = config.labeling
    travels = dispatched and config.storage is not None
    return LabelRequest(store=config.store_url, calculator=label.calculator.model_dump(mode="json"),
                        campaign=campaign, generation=generation, timeout_s=label.timeout_s,
                        max_attempts=label.max_attempts, workers=label.workers,
                        workdir=None if travels else str(config.workdir / "labeling" / slug(campaign)),
                        recover_running=recover_running,
                        slurm=label.slurm.model_dump(mode="json") if label.slurm else None,
                        campaign_file=None if travels else config.file, labeling_digest=label.digest(),
                        storage=config.storage if travels else None,
                        campaign_digest=config.digest if travels else None)


def completed_ids(request: LabelRequest) -> set[int]:
    """The request's completed rows now (before a dispatched run, to count what the run added)."""
    store = StructureStore(request.store, campaign=request.campaign)
    return {row.id for row in store.select(Status.COMPLETED, generation=request.generation)}


def dispatched_counts(request: LabelRequest, completed_before: set[int], flow_run_id: str) -> LabelCounts:
    """A dispatched run's counts from the store (its return value stays on the worker): rows of the
    generation completed during the run, and rows of the generation failed after it."""
    store = StructureStore(request.store, campaign=request.campaign)
    failed = sum(1 for _ in store.select(Status.FAILED, generation=request.generation))
    completed = sorted(completed_ids(request) - completed_before)
    return LabelCounts(completed=len(completed), failed=failed, completed_ids=completed, flow_run_id=flow_run_id)
