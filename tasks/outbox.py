"""Task: run the DFT outbox over candidate files against a store."""

from __future__ import annotations

from prefect import get_run_logger, task

from mlip_autopipec.outbox import OutboxReport, process_outbox, read_candidates
from mlip_autopipec.store import StructureStore


@task(task_run_name="outbox {out_dir}")
def outbox_task(queue_files: list[str], store_url: str | None, out_dir: str, tolerance: float,
                campaign: str = "default", generation: int = 0, source: str = "outbox",
                submitted_queue: str | None = None) -> OutboxReport:
    problems: list[str] = []
    candidates = read_candidates(queue_files, problems)
    for problem in problems:  # the good lines still go through
        get_run_logger().warning(problem)
    store = StructureStore(store_url, campaign=campaign) if store_url else None
    return process_outbox(candidates, store, submitted_queue, out_dir, tolerance=tolerance,
                          source=source, generation=generation)
