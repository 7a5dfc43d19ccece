"""Validation task: a thin wrapper over mlip_autopipec.validation.report that also publishes the
report and its numbers as Prefect artifacts (markdown with the plots inline + table, keys slugged from the title)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.validation.physical import cubic_crystal
from mlip_autopipec.validation.plots import thumbnail_uri
from mlip_autopipec.validation.report import (
    METRICS_NAME,
    REPORT_NAME,
    load_potential,
    load_validation_frames,
    potential_energy_reference,
    validate_potential,
)
from mlip_autopipec.validation.results import ValidationSummary
from tasks.publish import slug


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(potential: str, data: list[str], out: str, reference: str | None = None,
                  structure: str | None = None, crystal: str | None = None, lattice: float | None = None,
                  key: str | None = None, physical_skipped: str | None = None) -> ValidationSummary:
    """Validate the potential on `data`; physical checks on `structure` (and against `reference`)
    unless `physical_skipped` says why they do not apply."""
    logger = get_run_logger()
    calculator, title = load_potential(potential)
    frames, labels, skipped = load_validation_frames(data)
    for problem in skipped[:10]:
        logger.warning(f"skipped {problem['file']} frame {problem['frame']}: {problem['problem']}")
    reference_calc = CalculatorSpec(factory=reference).build() if reference else None
    crystal_atoms = None
    if structure and physical_skipped is None:
        try:
            crystal_atoms = cubic_crystal(structure, crystal, lattice)
        except ValueError as exc:
            physical_skipped = str(exc)
    if physical_skipped is not None:
        logger.warning(f"physical checks skipped: {physical_skipped}")
    logger.info(f"validating {title} on {len(frames)} structures"
                + (f", physical checks on {structure}" if structure else "")
                + (f" against {reference}" if reference else ""))
    metrics = validate_potential(calculator, frames, out, labels=labels, reference=reference_calc,
                                 reference_name=reference, structure=crystal_atoms, title=title,
                                 physical_skipped=physical_skipped,
                                 skipped=skipped, energy_reference=potential_energy_reference(potential),
                                 extra={"potential": str(Path(potential).resolve()),
                                                         "data": [str(Path(p).resolve()) for p in data]})
    publish_validation(metrics, out, key or title)
    return ValidationSummary(title=metrics["title"], frames=metrics["frames"], test_set=metrics["test_set"],
                             physical=metrics["physical"], metrics_file=str(Path(out, METRICS_NAME).resolve()),
                             report_file=str(Path(out, REPORT_NAME).resolve()))


def publish_validation(metrics: dict, out: str, key: str) -> None:
    """Markdown artifact (the report, its plots shown inline as thumbnails, their files as absolute
    paths) and a table of the numbers."""
    out_dir = Path(out).resolve()
    markdown = (out_dir / REPORT_NAME).read_text()
    for name, filename in metrics["plots"].items():  # the report's relative links: no server serves them
        uri = thumbnail_uri(out_dir / filename)
        if uri:
            markdown = markdown.replace(f"![{name}]({filename})", f"![{name}]({uri})")
    markdown += "\n## Files\n\n" + "\n".join(
        f"- {name}: `{out_dir / filename}`" for name, filename in
        [("metrics", METRICS_NAME), ("report", REPORT_NAME), *metrics["plots"].items()]) + "\n"
    create_markdown_artifact(key=f"{slug(key)}-validation-report", markdown=markdown,
                             description=f"validation of {metrics['title']}")
    create_table_artifact(key=f"{slug(key)}-validation-metrics", table=validation_table(metrics),
                          description=f"validation metrics of {metrics['title']}")


def validation_table(metrics: dict) -> list[dict]:
    rows = [{"group": "test set", "metric": name, "value": round(value, 4), "reference": None,
             "relative_error": None} for name, value in metrics["test_set"].items()]
    rows += [{"group": f"forces {element}", "metric": name, "value": round(value, 4), "reference": None,
              "relative_error": None} for element, row in metrics["per_element"].items()
             for name, value in row.items()]
    physical = metrics.get("physical")
    if physical and "skipped" not in physical:
        theirs = (physical.get("reference") or {}).get("scalars", {})
        for name, value in physical["potential"]["scalars"].items():
            rel = physical["relative_errors"].get(name)
            rows.append({"group": "physical", "metric": name, "value": round(value, 4),
                         "reference": round(theirs[name], 4) if name in theirs else None,
                         "relative_error": round(rel, 4) if rel is not None else None})
    return rows
