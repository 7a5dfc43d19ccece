"""Campaign steps around the shared train/label tasks: prepare, explore, select + queue, record.

Each takes the campaign's validated CampaignConfig (parsed once, by the flow; a small pydantic
model, so Prefect's cache key is its content) and returns a small typed result."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.campaign import steps
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import GenerationRecord, load_records, record_generation
from mlip_autopipec.campaign.results import ExplorationSummary, GenerationSteps, QueueSummary
from mlip_autopipec.exploration.md import WalkerResult
from mlip_autopipec.validation.plots import learning_curve
from tasks.caching import DIGEST_CACHE
from tasks.publish import slug


@task(name="prepare campaign", cache_policy=NO_CACHE)
def prepare_task(config: CampaignConfig) -> dict:
    """Generation 0's structures and the held-out set; the held-out MD's progress and problems are logged."""
    logger = get_run_logger()
    prepared = steps.prepare(config, progress=logger.info)
    for problem in prepared["held_out_problems"]:
        logger.warning(f"held-out set: {problem}")
    return prepared


@task(name="explore", cache_policy=DIGEST_CACHE, persist_result=True)
def explore_task(config: CampaignConfig, artifact_path: str, potential_digest: str, generation: int,
                 md_walkers: list[dict] | None = None) -> ExplorationSummary:
    """The generation's exploration; `md_walkers` (explore_walker_task results) when the MD walkers
    already ran elsewhere, else they run in this task."""
    selection = config.selection
    walkers = None if md_walkers is None else [WalkerResult.from_json(walker) for walker in md_walkers]
    summary = steps.explore(config, PotentialArtifact.load(artifact_path), generation,
                            md_walkers=walkers).summary(selection.lower)
    get_run_logger().info(
        f"{summary.walkers} walkers, {summary.frames} frames, {summary.stopped_early} stopped early "
        f"at {selection.uncertainty_key} > {selection.upper}; {100 * summary.fraction_below_gamma_lower:.0f}% "
        f"below {selection.lower} (already known)")
    return summary


@task(name="explore walker", task_run_name="explore walker {index}", cache_policy=DIGEST_CACHE,
      persist_result=True)
def explore_walker_task(config: CampaignConfig, artifact_path: str, potential_digest: str, generation: int,
                        index: int) -> dict:
    """One MD walker of the generation's exploration (the unit fanned out on a Dask cluster)."""
    walker = steps.explore_md_walker(config, PotentialArtifact.load(artifact_path), generation, index)
    return walker.to_json()


@task(name="select and queue", cache_policy=NO_CACHE)
def select_and_queue_task(config: CampaignConfig, artifact_path: str, trajectories: list[str],
                          generation: int) -> QueueSummary:
    queued = steps.select_and_queue(config, PotentialArtifact.load(artifact_path), trajectories, generation)
    get_run_logger().info(f"{queued.candidates} candidates, {queued.selected} selected "
                          f"({config.selection.method}), {queued.queued} queued for labelling; outbox skipped "
                          f"{queued.skipped_exact} exact and {queued.skipped_near} near duplicates")
    return queued


@task(name="record generation", cache_policy=NO_CACHE)
def record_task(config: CampaignConfig, generation_steps: GenerationSteps) -> GenerationRecord:
    """Write the generation's record (labels_total is read from the store now)."""
    return record_generation(config, generation_steps)


@task(name="learning curve", cache_policy=NO_CACHE)
def learning_curve_task(config: CampaignConfig) -> str:
    """workdir/report/learning-curve.png over every finished generation, and a markdown artifact
    with the numbers behind it (the UI shows artifacts, not files on the campaign's disk)."""
    records = load_records(config.workdir / "generations")
    target = learning_curve(records, config.workdir / "report" / "learning-curve.png",
                            title=f"{config.campaign}: held-out error vs labels")
    rows = "\n".join(f"| {r.generation} | {r.labels_total} | {r.held_out_energy_rmse_mev_per_atom:.2f} | "
                     f"{r.held_out_forces_rmse_mev_per_angstrom:.1f} |" for r in records)
    create_markdown_artifact(
        f"# {config.campaign}: learning curve\n\nPlot: `{target}`\n\n"
        "| generation | labels | held-out E RMSE (meV/atom) | held-out F RMSE (meV/Å) |\n|---|---|---|---|\n"
        + rows, key=f"{slug(config.campaign)}-learning-curve",
        description=f"{config.campaign}: held-out RMSE against the number of labels")
    return str(target)
