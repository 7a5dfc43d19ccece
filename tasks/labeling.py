"""The labelling task: label a campaign's pending structures and publish what happened.

Failed labels are part of the result (counts, messages, a table artifact), not task failures:
the library already retries each structure in a fresh worker process.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import DEFAULT_TIMEOUT_S, LabelReport, label_pending
from mlip_autopipec.store import StructureStore
from tasks.publish import slug

_MAX_TABLE_ROWS = 500  # failures first; beyond this the description has the counts


# Never cached: the same arguments label different rows as the store changes.
@task(name="label", task_run_name="label {campaign}", cache_policy=NO_CACHE)
def label_task(store_url: str, campaign: str, calculator: dict, generation: int | None = None,
               max_attempts: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = 1,
               workdir: str | None = None, limit: int | None = None,
               recover_running: bool = False) -> dict:
    """Label pending rows with `calculator` (a CalculatorSpec as dict); returns LabelReport.to_dict()."""
    spec = CalculatorSpec.model_validate(calculator)
    report = label_pending(StructureStore(store_url, campaign=campaign), spec, limit=limit,
                           generation=generation, timeout_s=timeout_s, max_attempts=max_attempts,
                           workers=workers, workdir=workdir, recover_running=recover_running)
    logger = get_run_logger()
    for error in report.errors:
        logger.warning(error)
    logger.info(report.summary())
    create_table_artifact(key=f"{slug(campaign)}-labels", table=label_table(report),
                          description=f"{campaign}: {report.summary()}")
    return report.to_dict()


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
