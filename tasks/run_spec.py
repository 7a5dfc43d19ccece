"""A unified run.yaml task (train, finetune, resume, evaluate, infer, export) as one Prefect task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from mlip_autopipec.backends.run_yaml import run_task
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.config.run_yaml import TRAINING_TASKS, RunSpec, load_run_spec
from tasks.blocks import BLOCK_NAME, resolve_potential
from tasks.progress import PrefectProgress
from tasks.publish import slug
from tasks.training import training_slot


class RunSpecResult(BaseModel):
    """What a run.yaml task did, as its backend reported it: what it wrote, and its metrics."""

    model_config = ConfigDict(frozen=True)

    task: str
    run_dir: str
    outputs: dict[str, Any]  # e.g. generation_dir, artifact, manifest, predictions, metrics_json
    metrics: dict[str, Any]


def checked_run_spec(config_path: str) -> RunSpec:
    """The run.yaml, its input files checked, except a `model_in` that names a PotentialGeneration
    block (`<name>-gen-NNN`): that one is fetched when the task runs (`with_model_in_resolved`)."""
    spec = load_run_spec(config_path, check_paths=False)
    model_in = spec.model_in
    if model_in is not None and not model_in.exists() and BLOCK_NAME.match(str(model_in)):
        spec = spec.model_copy(update={"model_in": None})
    try:
        spec.check_inputs_exist()
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    return spec.model_copy(update={"model_in": model_in})


def with_model_in_resolved(spec: RunSpec) -> RunSpec:
    """`model_in` as a local path: a block name's generation downloaded (verified) into the per-user cache."""
    if spec.model_in is None:
        return spec
    return spec.model_copy(update={"model_in": Path(resolve_potential(str(spec.model_in)))})


# Not cached: a run.yaml names its own run_dir, and the backends refuse to overwrite a finished one.
@task(name="run.yaml", task_run_name="{task_name}", cache_policy=NO_CACHE)
def run_spec_task(config_path: str, task_name: str = "run.yaml") -> RunSpecResult:
    spec = with_model_in_resolved(checked_run_spec(config_path))
    logger = get_run_logger()
    logger.info(f"{spec.backend} {spec.task} -> {spec.run_dir}")
    if spec.task in TRAINING_TASKS:
        progress = PrefectProgress(key=f"{slug(spec.backend)}-{spec.task}-progress",
                                   description=f"{spec.backend} {spec.task}: {spec.run_dir}")
        with training_slot():
            result = run_task(spec, progress=progress)
    else:
        result = run_task(spec)
    summary = RunSpecResult(task=spec.task, run_dir=str(spec.run_dir), metrics=result.get("metrics") or {},
                            outputs={key: value for key, value in result.items() if key not in ("task", "metrics")})
    metrics = summary.metrics
    lines = [f"# {spec.backend} {spec.task}", "", f"run directory: `{spec.run_dir}`", ""]
    lines += [f"- {key}: `{value}`" for key, value in {"task": summary.task, **summary.outputs}.items()
              if value is not None]
    if metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.6g} |" for key, value in sorted(metrics.items())
                  if isinstance(value, (int, float))]
    create_markdown_artifact("\n".join(lines), key=f"{slug(spec.backend)}-{spec.task}",
                             description=f"{spec.backend} {spec.task}")
    logger.info(json.dumps(result, default=str)[:2000])
    return summary
