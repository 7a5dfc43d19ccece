"""Tasks: a sampling run (mlip_autopipec.sampling.engine) and its action-quality report, with
Prefect artifacts. A run directory is state (resume appends to it), so neither task is cached."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.sampling import SamplingSummary, load_rules, read_structure, run_sampling
from mlip_autopipec.sampling.action_quality import COLUMNS, write_report
from mlip_autopipec.sampling.config import Quench
from mlip_autopipec.sampling.models import sampling_calculator
from tasks.publish import slug


@task(name="sample", cache_policy=NO_CACHE)
def sample_task(structure: str, config: str, run_dir: str, steps: int, seed: int = 0,
                target_basins: int | None = None, resume: bool = False, model: str | None = None,
                device: str = "auto", quench: str | None = None, quench_fmax: float | None = None,
                quench_steps: int | None = None) -> SamplingSummary:
    """The run's summary: its files, counts and per-candidate max force / γ."""
    logger = get_run_logger()
    rules = load_rules(config)
    overrides = {k: v for k, v in {"method": quench, "fmax": quench_fmax, "steps": quench_steps}.items()
                 if v is not None}
    quench_settings = Quench.model_validate({**rules.quench.model_dump(), **overrides})
    calculator, title = sampling_calculator(model, device)
    logger.info(f"sampling {structure} with {title} into {run_dir} (quench {quench_settings.method})")
    every = max(1, steps // 10)

    def report(record: dict) -> None:
        if record["id"] % every == 0:
            logger.info(f"step {record['id']}: {record['action']} "
                        + ("accepted" if record["accepted"] else f"rejected ({record['rejected_by']})"))

    summary = run_sampling(read_structure(structure), calculator, rules, Path(run_dir), steps, seed,
                           target_basins, resume, quench_settings, progress=report)
    create_table_artifact(
        key=f"{slug(Path(run_dir).resolve().name)}-sampling-candidates",
        table=summary.candidates or [{"id": "no candidate triggered", "max_force": None, "max_gamma": None}],
        description=summary.line())
    return summary


@task(name="action-quality", cache_policy=NO_CACHE)
def action_quality_task(run_dir: str, out_dir: str | None = None) -> dict:
    report = write_report(run_dir, out_dir)
    key = slug(Path(run_dir).resolve().name)
    create_table_artifact(key=f"{key}-action-quality",
                          table=[{c: (str(r[c]) if isinstance(r[c], dict) else r[c]) for c in COLUMNS}
                                 for r in report["rows"]],
                          description=f"action quality of {run_dir}")
    create_markdown_artifact(key=f"{key}-action-quality-report",
                             markdown=report["markdown_text"].replace(
                                 "](action_quality.png)", f"]({Path(report['plot']).resolve()})"),
                             description=f"action quality of {run_dir}")
    return {k: v for k, v in report.items() if k != "markdown_text"}
