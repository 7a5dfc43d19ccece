"""An active-learning campaign: generations of train -> validate -> explore -> select -> label.

    python -m flows.active_learning --config campaign.yaml

Generation 0 trains on labelled, perturbed copies of the seed structures. Every generation then
  1. exports the campaign's labels and trains (fine-tuning from the previous generation),
  2. validates on the fixed held-out set and publishes the potential (block + report),
  3. explores with Langevin MD walkers, recording the extrapolation grade γ (one task per walker
     on a Dask cluster with `execution: {task_runner: dask}`, else one by one in one task),
  4. selects frames with γ in [gamma_lower, gamma_upper) by D-optimality (or, for a MACE
     committee, by its force deviation between the trust levels) and sends them through the DFT
     outbox, which skips exact and near duplicates of everything stored or queued,
  5. labels them (one subprocess per structure; failures are recorded and retried, never fatal).
It stops at max_generations, when the label budget is spent, or when the share of explored
frames the potential already knows (γ < gamma_lower) reaches converged_fraction.

Re-running the same command resumes after the last finished generation; a finished campaign
does nothing. Killing it mid-generation loses no labels: labelled rows are in the store, and
rows left running are sent back to pending on the next start, where the killed run's flow, subflow
and task runs, left "Running" in the Prefect UI, are set Crashed (tasks/run_identity.py). The UI's
artifact `<campaign>-dashboard` shows how the campaign is doing, a new version each generation.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import cli
from mlip_autopipec.campaign.config import CampaignConfig, load_campaign
from mlip_autopipec.campaign.labelling import LabelRequest, completed_ids, dispatched_counts, label_request
from mlip_autopipec.campaign.records import GenerationRecord, load_records, stop_reason
from mlip_autopipec.campaign.results import GenerationSteps, LabelCounts
from mlip_autopipec.campaign.steps import HeldOutError, finished_generation, md_walker_indices
from mlip_autopipec.campaign.travel import generation_name
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.exploration.md import WalkerResult
from mlip_autopipec.files import sha256_file
from mlip_autopipec.storage import ObjectStoreError
from mlip_autopipec.store import StoreError, check_writable
from mlip_autopipec.validation.results import Evaluation
from tasks.caching import run_with_outputs
from tasks.campaign import (dashboard_task, explore_task, explore_walker_task, generation_tree_task, prepare_task,
                            record_task, select_and_queue_task, stored_generation_task, upload_campaign_file_task,
                            upload_dataset_task)
from tasks.labeling import label_task
from tasks.publish import BlockConflict, publish_task, slug
from tasks.rendering import render_most_uncertain_task
from tasks.run_identity import mark_earlier_runs_crashed
from tasks.storage import open_storage
from tasks.store import ExportedDataset, export_task
from tasks.training import TrainedPotential, evaluate_task, fetch_tree_task, train_task


@flow(name="active-learning", log_prints=True)
def active_learning(config: str) -> list[dict]:
    """The campaign of the file `config`; its settings are read and checked here, once. Tasks get
    the validated CampaignConfig; subflows get the file's path and digest (Prefect records a flow
    run's parameters, and the file holds the labeler's settings) and parse it once per process."""
    settings = load_campaign(str(Path(config).resolve()), sha256_file(config))  # the subflows' parse, too
    logger = get_run_logger()
    mark_earlier_runs_crashed(settings.workdir)  # runs of this campaign left "Running" by a killed process
    generations_root = settings.workdir / "generations"
    records = load_records(generations_root)
    reason = stop_reason(records, settings.stop)
    if reason:
        print(f"campaign {settings.campaign} is finished ({reason}); nothing to do")
        return [r.model_dump(mode="json") for r in records]

    dashboard_task(settings, f"running generation {len(records)}")
    if settings.storage is not None and settings.dispatch.labeling_deployment is not None:
        upload_campaign_file_task(settings)  # label runs elsewhere fetch it by digest
    prepare_task(settings)
    label_structures(settings, settings.held_out_campaign, None, recover_running=True)
    # the campaign's own directory: a workdir from before held-out-md/ still holds held-out/md/ beside it
    held_out = export_task(settings.store_url, settings.held_out_campaign, str(settings.workdir / "held-out"),
                           0.0, settings.seed, ["extxyz"], overwrite=True)
    first = len(records)
    label_structures(settings, settings.campaign, first, recover_running=True)

    while reason is None:
        generation = len(records)
        previous = records[-1] if records else None
        records.append(generation_flow(settings.file, settings.digest, generation,
                                       previous.potential if previous else None,
                                       previous.potential_digest if previous else None,
                                       held_out.manifest, held_out.digest))
        reason = stop_reason(records, settings.stop)
        print(_progress_line(records[-1]))
        dashboard_task(settings, f"stopped: {reason}" if reason else f"running generation {len(records)}")
    logger.info(f"campaign {settings.campaign} stopped: {reason}")
    create_table_artifact(key=f"{slug(settings.campaign)}-campaign-summary",
                          table=[r.table_row() for r in records],
                          description=f"{settings.campaign}: {len(records)} generations; stopped: {reason}")
    return [r.model_dump(mode="json") for r in records]


@flow(name="generation", flow_run_name="generation {generation}", log_prints=True)
def generation_flow(config: str, config_digest: str, generation: int, initial_artifact: str | None,
                    initial_digest: str | None, held_out_manifest: str, held_out_digest: str) -> GenerationRecord:
    """One generation as its own (sub)flow run, so a long campaign's task states do not pile up."""
    settings = load_campaign(config, config_digest)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = now - clock
        clock = now

    dataset = export_task(settings.store_url, settings.campaign,
                          str(settings.workdir / "datasets" / f"gen-{generation:03d}"),
                          settings.export_test_fraction, settings.seed,
                          sorted({"extxyz", settings.training.backend} & {"extxyz", "pacemaker", "mace"}),
                          max_generation=generation)
    lap("export")
    trained = train_generation(settings, dataset, generation, initial_artifact, initial_digest)
    lap("train")
    test = run_with_outputs(evaluate_task, Evaluation.output_files, trained.artifact, trained.digest,
                            dataset.manifest, dataset.digest)
    held = run_with_outputs(evaluate_task, Evaluation.output_files, trained.artifact, trained.digest,
                            held_out_manifest, held_out_digest, split="train", name="held-out")
    publish_task(settings.campaign, trained.artifact, held, storage=settings.storage)
    lap("validate")
    md_walkers = None
    if settings.execution.task_runner == "dask" and md_walker_indices(settings):
        from tasks.runners import build_task_runner, prefect_api_for_workers

        with prefect_api_for_workers(settings.execution):
            md_walkers = explore_walkers_flow.with_options(task_runner=build_task_runner(settings.execution))(
                config, config_digest, trained.artifact, trained.digest, generation)
    explored = run_with_outputs(explore_task, lambda result: result.trajectories, settings, trained.artifact,
                                trained.digest, generation, md_walkers=md_walkers)
    if settings.exploration.render_most_uncertain:
        render_most_uncertain_task(explored.trajectories, str(Path(trained.generation_dir) / "report"),
                                   key=f"{settings.campaign}-gen-{generation:03d}-most-uncertain")
    lap("explore")
    queued = select_and_queue_task(settings, trained.artifact, explored.trajectories, generation)
    lap("select")
    labels = label_structures(settings, settings.campaign, generation + 1)
    lap("label")
    return record_task(settings, GenerationSteps(
        generation=generation, potential=trained.artifact, potential_digest=trained.digest,
        training_structures=dataset.counts["train"], held_out_metrics=held.metrics,
        test_metrics=test.metrics, explored=explored, queued=queued, labels=labels, step_seconds=seconds))


@flow(name="explore walkers", flow_run_name="explore walkers, generation {generation}")
def explore_walkers_flow(config: str, config_digest: str, artifact: str, potential_digest: str,
                         generation: int) -> list[WalkerResult]:
    """The generation's MD walkers, one task each on this flow's task runner (a Dask cluster with
    `execution.task_runner: dask`); a cached walker whose trajectory is gone runs again."""
    settings = load_campaign(config, config_digest)
    indices = md_walker_indices(settings)
    arguments = (settings, artifact, potential_digest, generation)
    walkers = [future.result() for future in [explore_walker_task.submit(*arguments, index) for index in indices]]
    gone = [position for position, walker in enumerate(walkers) if not Path(walker.trajectory).exists()]
    again = [explore_walker_task.with_options(refresh_cache=True).submit(*arguments, indices[position])
             for position in gone]
    for position, future in zip(gone, again):
        walkers[position] = future.result()
    return walkers


def label_structures(settings: CampaignConfig, campaign: str, generation: int | None,
                     recover_running: bool = False) -> LabelCounts:
    """Label a campaign's pending rows (of one generation): in-process by default (a thread pool in one
    task, or one task per structure on a Dask cluster with `execution.task_runner: dask`), or as a run
    of the `dispatch.labeling_deployment` deployment (flows/label.py on the DFT pool), waited for.
    A dispatched run's counts come from the store (its return value stays on the worker)."""
    deployment = settings.dispatch.labeling_deployment
    request = label_request(settings, campaign, generation, recover_running, dispatched=deployment is not None)
    if deployment is None and settings.execution.task_runner == "dask":
        # One task per structure on the Dask cluster (flows/label.py), as its own subflow run.
        from flows.label import label as label_flow
        from tasks.runners import build_task_runner, prefect_api_for_workers

        with prefect_api_for_workers(settings.execution):
            return LabelCounts.of(
                label_flow.with_options(task_runner=build_task_runner(settings.execution))(**request.flow_parameters()))
    if deployment is None:
        return LabelCounts.of(label_task(
            request.store, request.campaign, request.calculator, generation=request.generation,
            max_attempts=request.max_attempts, timeout_s=request.timeout_s, workers=request.workers,
            workdir=request.workdir, recover_running=request.recover_running, slurm=request.slurm))
    return _dispatch_labelling(settings, deployment, request)


def _dispatch_labelling(settings: CampaignConfig, deployment: str, request: LabelRequest) -> LabelCounts:
    before = completed_ids(request)
    flow_run = _run_deployment_and_wait(settings, deployment, request.flow_parameters(),
                                        f"labelling of {request.campaign}, generation {request.generation}")
    counts = dispatched_counts(request, before, str(flow_run.id))
    get_run_logger().info(f"labelling run {flow_run.name!r} of {deployment}: {counts.completed} completed, "
                          f"{counts.failed} failed")
    return counts


def train_generation(settings: CampaignConfig, dataset: ExportedDataset, generation: int,
                     initial_artifact: str | None, initial_digest: str | None) -> TrainedPotential:
    """Train the generation in-process, or as a run of the `dispatch.training_deployment` deployment
    (flows/train.py:train_generation on the GPU pool), waited for. Either way a finished generation
    with the same dataset, config and starting potential is reused, not retrained; the dispatched
    run's result is read back from the generations directory (the run's return value stays on the
    worker), so the worker must see the campaign's workdir under the same path, or, with `storage:`,
    downloaded from there into it."""
    root = settings.workdir / "generations"
    arguments = (dataset.manifest, dataset.digest, settings.training.model_dump(mode="json"), str(root),
                 initial_artifact, initial_digest)
    deployment = settings.dispatch.training_deployment
    if deployment is None:
        return run_with_outputs(train_task, TrainedPotential.output_files, *arguments, generation=generation)

    def finished():
        return finished_generation(settings, dataset.digest, initial_digest)

    if finished() is None and settings.storage is not None:
        _train_through_storage(settings, deployment, dataset, generation, initial_artifact, initial_digest)
    elif finished() is None:
        parameters = dict(zip(("manifest", "manifest_digest", "training_config", "generations_root",
                               "initial_artifact", "initial_digest"), arguments), generation=generation)
        flow_run = _run_deployment_and_wait(settings, deployment, parameters, f"training of generation {generation}")
        get_run_logger().info(f"training run {flow_run.name!r} of {deployment} finished")
    artifact = finished()
    if artifact is None:
        raise RuntimeError(f"the training run of {deployment} finished, but {root} holds no generation trained "
                           f"on dataset {dataset.digest[:12]}: does the worker see the campaign's workdir "
                           "under the same path?")
    return TrainedPotential.of(artifact)


def _train_through_storage(settings: CampaignConfig, deployment: str, dataset: ExportedDataset, generation: int,
                           initial_artifact: str | None, initial_digest: str | None) -> None:
    """The generation into workdir/generations/gen-NNN from storage: the tree its name points at if
    that was trained on these inputs (the same command twice trains once), else the tree a run of
    `deployment` trains from the uploaded dataset and starting generation (digests, no paths)."""
    logger = get_run_logger()
    name = generation_name(slug(settings.campaign), generation)
    tree = stored_generation_task(settings, generation, dataset.digest, initial_digest)
    if tree is not None:
        logger.info(f"{name} in storage was trained on the same dataset, config and starting potential: reusing it")
    else:
        parameters = dict(manifest=None, manifest_digest=dataset.digest,
                          training_config=settings.training.model_dump(mode="json"),
                          initial_digest=initial_digest, generation=generation, storage=settings.storage,
                          dataset_tree=upload_dataset_task(settings, str(Path(dataset.manifest).parent), generation),
                          initial_tree=generation_tree_task(settings, initial_artifact) if initial_artifact else None,
                          name=slug(settings.campaign))
        flow_run = _run_deployment_and_wait(settings, deployment, parameters, f"training of generation {generation}")
        logger.info(f"training run {flow_run.name!r} of {deployment} finished")
        tree = stored_generation_task(settings, generation, dataset.digest, initial_digest)
        if tree is None:
            raise RuntimeError(f"the training run {flow_run.name!r} of {deployment} finished, but {name} in "
                               f"{settings.storage} names no generation trained on dataset {dataset.digest[:12]}")
    fetch_tree_task(settings.storage, tree, str(settings.workdir / "generations" / f"gen-{generation:03d}"))


def _run_deployment_and_wait(settings: CampaignConfig, deployment: str, parameters: dict, what: str):
    """Run `deployment` and wait for it (dispatch.timeout_s at most); anything but Completed raises."""
    from prefect.deployments import run_deployment

    timeout = settings.dispatch.timeout_s
    flow_run = run_deployment(deployment, parameters=parameters, timeout=timeout, poll_interval=2)
    state = flow_run.state
    if state is None or not state.is_completed():
        name = state.name if state is not None else "without a state"
        waited = "" if state is None or state.is_final() else \
            f" after waiting {timeout:g} s (dispatch.timeout_s); it was left running"
        raise RuntimeError(f"{what}: run {flow_run.name!r} ({flow_run.id}) of deployment {deployment!r} is "
                           f"{name}{waited}; nothing was recorded for this step: {state.message if state else ''}")
    return flow_run


def _progress_line(record: GenerationRecord) -> str:
    return (f"generation {record.generation}: {record.training_structures} training structures, "
            f"held-out force RMSE {record.held_out_forces_rmse_mev_per_angstrom:.1f} meV/Å, "
            f"energy RMSE {record.held_out_energy_rmse_mev_per_atom:.2f} meV/atom; explored "
            f"{record.explored_frames} frames ({100 * record.fraction_below_gamma_lower:.0f}% known), "
            f"selected {record.selected}, labelled {record.labels_added} ({record.labels_failed} failed)"
            + (f"; no γ yet for {', '.join(sorted(record.species_without_gamma))} (selected as uncertain)"
               if record.species_without_gamma else ""))


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("active_learning", __doc__)
    parser.add_argument("--config", required=True, help="campaign YAML (see campaigns/cuni-demo.yaml)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a configuration error")
    args = parser.parse_args(argv)
    try:
        # The whole file is checked (keys, files, elements, the labeler's import) before a Prefect
        # server, the workdir or the store is touched.
        settings = CampaignConfig.load(args.config)
        check_writable(settings.store_url)
        cli.use_prefect_api()  # the configured Prefect API, else the local server (flows/cli.py)
        if settings.storage is not None:
            open_storage(settings.storage).probe()  # unreachable or refused: say so before any step runs
        records = active_learning(args.config)
    except (ConfigError, StoreError, ObjectStoreError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BlockConflict as exc:  # another campaign of this name published this generation's block
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except HeldOutError as exc:  # every held-out MD run failed: the reasons are in the message
        print(f"error: {exc}", file=sys.stderr)
        return 1
    header = f"{'gen':>3} {'train':>6} {'labels':>6} {'failed':>6} {'F RMSE meV/Å':>13} {'E RMSE meV/at':>13} " \
             f"{'known %':>7} {'selected':>8}"
    print(header)
    for r in records:
        print(f"{r['generation']:>3} {r['training_structures']:>6} {r['labels_total']:>6} {r['labels_failed']:>6} "
              f"{r['held_out_forces_rmse_mev_per_angstrom']:>13.1f} {r['held_out_energy_rmse_mev_per_atom']:>13.2f} "
              f"{100 * r['fraction_below_gamma_lower']:>7.0f} {r['selected']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
