"""Labelling tasks: the whole batch in one task, or one task per structure for a task runner to fan out.

Failed labels are part of the result (counts, messages, a table artifact), not task failures:
the library already retries each structure in a fresh worker process.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.config.execution import SlurmSettings
from mlip_autopipec.labeling import (DEFAULT_TIMEOUT_S, Attempt, CancelFile, LabelReport, label_claimed,
                                     label_pending, label_pending_slurm)
from mlip_autopipec.store import StructureStore
from tasks.publish import slug

_MAX_TABLE_ROWS = 500  # failures first; beyond this the description has the counts


# Never cached: the same arguments label different rows as the store changes.
@task(name="label", task_run_name="label {campaign}", cache_policy=NO_CACHE)
def label_task(store_url: str, campaign: str, calculator: dict, generation: int | None = None,
               max_attempts: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = 1,
               workdir: str | None = None, limit: int | None = None,
               recover_running: bool = False, slurm: dict | None = None) -> LabelReport:
    """Label pending rows with `calculator` (a CalculatorSpec as dict) on a thread pool inside this
    task, or, with `slurm` (SlurmSettings as dict), as SLURM batch jobs this task submits and watches.
    flows/label.py fans out over the flow's task runner instead."""
    spec = CalculatorSpec.model_validate(calculator)
    store = StructureStore(store_url, campaign=campaign)
    if slurm is not None:
        report = label_pending_slurm(store, spec, SlurmSettings.model_validate(slurm), limit=limit,
                                     generation=generation, timeout_s=timeout_s, max_attempts=max_attempts,
                                     workdir=workdir, recover_running=recover_running)
    else:
        report = label_pending(store, spec, limit=limit, generation=generation, timeout_s=timeout_s,
                               max_attempts=max_attempts, workers=workers, workdir=workdir,
                               recover_running=recover_running)
    publish_label_report(campaign, report)
    return report


# One row claimed by the caller; returns its Attempt. Not cached (the row changes), not
# retried by Prefect: the store counts attempts and the caller requeues.
@task(name="label-structure", task_run_name="label structure {row_id}", cache_policy=NO_CACHE)
def label_row_task(store_url: str, campaign: str, row_id: int, calculator: dict, job_root: str,
                   timeout_s: float = DEFAULT_TIMEOUT_S, cancel_file: str | None = None,
                   keep_files: bool = False, min_distance: float = DEFAULT_MIN_DISTANCE) -> Attempt:
    attempt = label_claimed(StructureStore(store_url, campaign=campaign), row_id,
                            CalculatorSpec.model_validate(calculator), job_root, timeout_s=timeout_s,
                            min_distance=min_distance, keep_files=keep_files,
                            cancel=CancelFile(cancel_file) if cancel_file else None)
    if attempt.error:
        get_run_logger().warning(attempt.error)
    return attempt


def publish_label_report(campaign: str, report: LabelReport) -> None:
    """Log every failure and the summary; the table artifact "<campaign>-labels". Call inside a run."""
    logger = get_run_logger()
    for error in report.errors:
        logger.warning(error)
    logger.info(report.summary())
    for job in report.jobs:
        logger.info(f"SLURM job {job['job_id']} ({job['name']}): {job['state']}, structures "
                    f"{', '.join(map(str, job['structures']))}, queued {job['queued_s']:g} s")
    create_table_artifact(key=f"{slug(campaign)}-labels", table=label_table(report),
                          description=f"{campaign}: {report.summary()}")


def label_table(report: LabelReport) -> list[dict]:
    """One row per structure tried: failed ones first, with their last error."""
    rows: dict[int, dict] = {}
    for attempt in report.attempts:
        row = rows.setdefault(attempt.structure_id, {"structure": attempt.structure_id, "status": "",
                                                     "attempts": 0, "seconds": 0.0, "error": ""})
        row["attempts"] = attempt.attempt
        row["seconds"] = round(row["seconds"] + attempt.seconds, 3)
        row["error"] = attempt.error or ""
    for row_id, row in rows.items():
        row["status"] = ("failed" if row_id in report.failed else
                         "completed" if row_id in report.completed else "unfinished")
    ordered = sorted(rows.values(), key=lambda row: (row["status"] == "completed", row["structure"]))
    return ordered[:_MAX_TABLE_ROWS]
