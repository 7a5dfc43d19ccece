"""Campaign steps around the shared train/label tasks: prepare, explore, select + queue, record.

Each takes the campaign's validated CampaignConfig (parsed once, by the flow; a small pydantic
model, so Prefect's cache key is its content) and returns a small typed result."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.campaign import steps, travel
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import GenerationRecord, load_records, record_generation
from mlip_autopipec.campaign.results import ExplorationSummary, GenerationSteps, Preparation, QueueSummary
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.exploration.md import WalkerResult
from mlip_autopipec.validation.plots import learning_curve, markdown_image
from tasks.caching import DIGEST_CACHE
from tasks.publish import slug
from tasks.storage import open_storage


@task(name="upload campaign file", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def upload_campaign_file_task(config: CampaignConfig) -> str:
    """The campaign file into the campaign's storage (content-addressed: sent once), for label runs on
    machines that do not see it; returns its digest, the one the campaign started with."""
    stored = open_storage(config.storage).put_file(config.file)
    if stored.digest != config.digest:
        raise ConfigError(f"{config.file} changed since the campaign started (digest {stored.digest[:12]}, "
                          f"expected {config.digest[:12]}): restart the campaign to use the new settings")
    return stored.digest


@task(name="upload dataset", task_run_name="upload dataset gen-{generation:03d}", retries=2, retry_delay_seconds=5,
      cache_policy=NO_CACHE)
def upload_dataset_task(config: CampaignConfig, directory: str, generation: int) -> str:
    """The generation's exported dataset as a tree, named `<slug>/datasets/gen-NNN`; returns the tree's digest."""
    objects = open_storage(config.storage)
    started = time.perf_counter()
    tree = objects.put_tree(directory).digest
    name = travel.dataset_name(slug(config.campaign), generation)
    objects.set_name(name, tree)
    get_run_logger().info(f"uploaded dataset {directory} as tree {tree[:12]} ({travel.tree_bytes(objects, tree)} "
                          f"bytes), named {name}, in {time.perf_counter() - started:.1f} s")
    return tree


@task(name="starting generation's tree", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def generation_tree_task(config: CampaignConfig, artifact_path: str) -> str:
    """The storage tree of a generation the campaign holds (uploaded now if storage has none of it)."""
    return travel.generation_tree(open_storage(config.storage), slug(config.campaign),
                                  PotentialArtifact.load(artifact_path))


@task(name="find stored generation", cache_policy=NO_CACHE)
def stored_generation_task(config: CampaignConfig, generation: int, dataset_digest: str,
                           initial_digest: str | None) -> str | None:
    """The tree `<slug>/generations/gen-NNN` points at if it was trained on this dataset with this
    config from this starting potential, else None."""
    return travel.matching_generation(open_storage(config.storage),
                                      travel.generation_name(slug(config.campaign), generation), dataset_digest,
                                      config.training.digest(), initial_digest)


@task(name="prepare campaign", cache_policy=NO_CACHE)
def prepare_task(config: CampaignConfig) -> Preparation:
    """Generation 0's structures and the held-out set; the held-out MD's progress and problems are logged."""
    logger = get_run_logger()
    prepared = steps.prepare(config, progress=logger.info)
    for problem in prepared.held_out_problems:
        logger.warning(f"held-out set: {problem}")
    return prepared


@task(name="explore", cache_policy=DIGEST_CACHE, persist_result=True)
def explore_task(config: CampaignConfig, artifact_path: str, potential_digest: str, generation: int,
                 md_walkers: list[WalkerResult] | None = None) -> ExplorationSummary:
    """The generation's exploration; `md_walkers` (explore_walker_task results) when the MD walkers
    already ran elsewhere, else they run in this task."""
    selection = config.selection
    summary = steps.explore(config, PotentialArtifact.load(artifact_path), generation,
                            md_walkers=md_walkers).summary(selection.lower)
    get_run_logger().info(
        f"{summary.walkers} walkers, {summary.frames} frames, {summary.stopped_early} stopped early "
        f"at {selection.uncertainty_key} > {selection.upper}; {100 * summary.fraction_below_gamma_lower:.0f}% "
        f"below {selection.lower} (already known)")
    return summary


@task(name="explore walker", task_run_name="explore walker {index}", cache_policy=DIGEST_CACHE,
      persist_result=True)
def explore_walker_task(config: CampaignConfig, artifact_path: str, potential_digest: str, generation: int,
                        index: int) -> WalkerResult:
    """One MD walker of the generation's exploration (the unit fanned out on a Dask cluster)."""
    return steps.explore_md_walker(config, PotentialArtifact.load(artifact_path), generation, index)


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


@task(name="campaign dashboard", cache_policy=NO_CACHE)
def dashboard_task(config: CampaignConfig, status: str) -> str | None:
    """The campaign's one artifact (key `<campaign>-dashboard`), a new version of it each time:
    status, labels spent and failed, the learning curve inline, the generations' table and the time
    of each step. Also writes workdir/report/learning-curve.png; returns its path (None before the
    first generation)."""
    records = load_records(config.workdir / "generations")
    curve = None
    if records:
        curve = str(learning_curve(records, config.workdir / "report" / "learning-curve.png",
                                   title=f"{config.campaign}: held-out error vs labels"))
    create_markdown_artifact(dashboard_markdown(config.campaign, records, status, curve, config.stop.label_budget),
                             key=f"{slug(config.campaign)}-dashboard",
                             description=f"{config.campaign}: {status}")
    return curve


STEPS = ("export", "train", "validate", "explore", "select", "label")


def dashboard_markdown(campaign: str, records: list[GenerationRecord], status: str, curve: str | None,
                       label_budget: int | None = None) -> str:
    """The dashboard's Markdown: what `flows.active_learning` prints at its end, and more."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {campaign}: campaign dashboard", "", f"**{status}** (updated {now})", ""]
    if not records:
        return "\n".join(lines + ["No generation finished yet.", ""])
    last = records[-1]
    failed = sum(r.labels_failed for r in records)
    budget = f" of {label_budget}" if label_budget else ""
    lines += ["| generations | labels spent | labels failed | F RMSE meV/Å | E RMSE meV/at | known % |",
              "|---|---|---|---|---|---|",
              f"| {len(records)} | {last.labels_total}{budget} | {failed} | "
              f"{last.held_out_forces_rmse_mev_per_angstrom:.1f} | {last.held_out_energy_rmse_mev_per_atom:.2f} | "
              f"{100 * last.fraction_below_gamma_lower:.0f} |", ""]
    lines += ["Errors on the held-out set, of the last generation; known: explored frames below gamma_lower.", ""]
    if curve:
        lines += ["## Learning curve", "", *markdown_image("learning curve", curve), ""]
    lines += ["## Generations", "",
              "| gen | train | labels | added | failed | F RMSE meV/Å | E RMSE meV/at | known % | selected |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.generation} | {r.training_structures} | {r.labels_total} | {r.labels_added} | {r.labels_failed} "
              f"| {r.held_out_forces_rmse_mev_per_angstrom:.1f} | {r.held_out_energy_rmse_mev_per_atom:.2f} | "
              f"{100 * r.fraction_below_gamma_lower:.0f} | {r.selected} |" for r in records]
    steps = list(STEPS) + sorted({step for r in records for step in r.step_seconds} - set(STEPS))
    lines += ["", "## Time per step (s)", "", "| gen | " + " | ".join(steps) + " | total |",
              "|---|" + "---|" * (len(steps) + 1)]
    lines += [f"| {r.generation} | " + " | ".join(_seconds(r.step_seconds.get(step)) for step in steps)
              + f" | {_seconds(sum(r.step_seconds.values()) if r.step_seconds else None)} |" for r in records]
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"
