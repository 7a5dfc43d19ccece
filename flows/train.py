"""Train a potential: data -> export -> train -> evaluate on the test split -> publish.

    python -m flows.train --data ../shared/data/Cu-I.extxyz --out runs/cu
    python -m flows.train --config run.yaml   # a unified run.yaml: any task of any backend
    python -m flows.train --config train.yaml --store runs/cu/structures.db --out runs/cu
    python -m flows.train --config train.yaml --store DB --out DIR --initial-potential DIR/generations/gen-000
    python -m flows.train --data cu.extxyz --out runs/cu --storage s3://bucket/mlip   # generations travel
    python -m flows.train --store DB --out DIR --initial-potential cu-gen-000   # a block: fetched, verified

`--data` ingests the files into OUT/structures.db first (validated, deduplicated); `--store`
trains on what a store already holds. Generations land in OUT/generations/gen-NNN and are never
overwritten; running the same command twice trains once. Each generation is published as the
PotentialGeneration block NAME-gen-NNN (--name, default: OUT's directory name); a block that holds
another potential is never replaced.

A unified run.yaml (top-level `backend:` and `task:` train|finetune|resume|evaluate|infer|export,
see src/mlip_autopipec/config/run_yaml.py) runs that one task; its run_dir replaces --out/--store/--data.

The campaign-style config file (YAML) has three optional sections:

    campaign: cu-demo
    export: {test_fraction: 0.1, seed: 0}
    training: {backend: pacemaker, cutoff: 5.0, number_of_functions_per_element: 20, maxiter: 100}
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.backends import BackendError, PotentialArtifact
from mlip_autopipec.backends.base import ARTIFACT_NAME
from mlip_autopipec.campaign.travel import generation_name, scratch_directory
from mlip_autopipec.config.run_files import ConfigError, read_yaml_mapping
from mlip_autopipec.config.run_yaml import is_run_spec
from mlip_autopipec.config.train_run import TrainRunConfig
from mlip_autopipec.config.training import parse_training_config
from mlip_autopipec.data.manifest import MANIFEST_NAME
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.storage import ObjectStoreError, check_no_credentials
from mlip_autopipec.store import StoreError, check_writable
from mlip_autopipec.store.secrets import password_to_environment
from mlip_autopipec.validation.results import Evaluation
from tasks.blocks import BLOCK_NAME, resolve_potential
from tasks.caching import run_with_outputs
from tasks.publish import publish_task
from tasks.run_identity import mark_earlier_runs_crashed
from tasks.run_spec import RunSpecResult, checked_run_spec, run_spec_task, with_model_in_resolved
from tasks.storage import open_storage
from tasks.store import export_task, ingest_and_export_task
from tasks.training import (StoredGeneration, TrainedPotential, evaluate_task, fetch_tree_task, store_tree_task,
                            train_task)

# Prefect's own limit sits above the backend's (which kills the training process group).
_TIMEOUT_MARGIN_S = 120


class PublishedPotential(TrainedPotential):
    """What `train` returns: the generation, its evaluation on the test split and the block it is published as."""

    evaluation: Evaluation
    block: str


@flow(name="train", log_prints=True)
def train(out: str, config: str | None = None, store: str | None = None, data: list[str] | None = None,
          initial_potential: str | None = None, name: str | None = None,
          storage: str | None = None) -> PublishedPotential:
    """`initial_potential`: a generation directory, its artifact.json, or a PotentialGeneration block
    name (downloaded into OUT/initial/<name>); `storage`: upload the generation there (tasks/publish.py)."""
    settings = TrainRunConfig.load(config)
    out_dir = Path(out)
    mark_earlier_runs_crashed(out_dir)  # runs of this --out left "Running" by a killed process
    store_url = store or str(out_dir / "structures.db")
    export = (str(out_dir / "dataset"), settings.export.test_fraction, settings.export.seed, settings.export_formats)
    if data:  # exports the rows just written, without reading them back, when they are all the campaign holds
        report, dataset = ingest_and_export_task(store_url, data, settings.campaign, "ingest", 0,
                                                 DEFAULT_MIN_DISTANCE, *export)
        for problem in report.problems:
            print(f"rejected {problem}")
    else:
        dataset = export_task(store_url, settings.campaign, *export)
    initial = PotentialArtifact.load(resolve_potential(initial_potential, out_dir / "initial")) \
        if initial_potential else None
    trained = run_with_outputs(
        train_task.with_options(timeout_seconds=settings.training.timeout_seconds + _TIMEOUT_MARGIN_S),
        TrainedPotential.output_files, dataset.manifest, dataset.digest, settings.training.model_dump(mode="json"),
        str(out_dir / "generations"),
        str(initial.generation_dir / "artifact.json") if initial else None,
        initial.digest if initial else None,
    )
    evaluation = run_with_outputs(evaluate_task, Evaluation.output_files, trained.artifact, trained.digest,
                                  dataset.manifest, dataset.digest)
    block = publish_task(settings.campaign, trained.artifact, evaluation, name or out_dir.resolve().name,
                         storage=storage)

    metrics = evaluation.metrics
    print(f"{Path(trained.generation_dir).name}: {evaluation.split} energy RMSE "
          f"{metrics['energy_rmse_mev_per_atom']:.2f} meV/atom (against {evaluation.energy_compared_with}), "
          "forces RMSE "
          f"{metrics['forces_rmse_mev_per_angstrom']:.1f} meV/Å; published as block {block}")
    for element, why in sorted(evaluation.species_without_gamma.items()):
        print(f"no γ yet for {element}: {why}")
    return PublishedPotential(**dict(trained), evaluation=evaluation, block=block)


@flow(name="train-generation", flow_run_name="generation {generation}", log_prints=True)
def train_generation(manifest: str | None, manifest_digest: str, training_config: dict,
                     generations_root: str | None = None, initial_artifact: str | None = None,
                     initial_digest: str | None = None, generation: int | None = None, storage: str | None = None,
                     dataset_tree: str | None = None, initial_tree: str | None = None,
                     name: str | None = None) -> TrainedPotential | StoredGeneration:
    """Train one generation from an exported dataset: the step a campaign hands to the GPU pool
    (`dispatch.training_deployment`). A finished generation with the same inputs is reused.

    With `storage` (a campaign whose workers share no disk) the inputs are digests, not paths: the
    dataset tree `dataset_tree` and the starting generation's tree `initial_tree` are fetched into a
    scratch directory of this worker (verified), the generation is trained there, uploaded as a tree
    that the name `<name>/generations/gen-NNN` then points at, and the scratch directory is removed
    (kept, and named in the error, when the training fails)."""
    config = parse_training_config(training_config)
    train = train_task.with_options(timeout_seconds=config.timeout_seconds + _TIMEOUT_MARGIN_S)
    if storage is None:
        trained = run_with_outputs(train, TrainedPotential.output_files, manifest, manifest_digest, training_config,
                                   generations_root, initial_artifact, initial_digest, generation=generation)
        print(f"{trained.generation_dir}: {trained.backend} {trained.version}")
        return trained
    if dataset_tree is None or name is None or generation is None:
        raise ValueError("train-generation with storage needs dataset_tree, name and generation")
    with scratch_directory("train-", keep_on_failure=True) as scratch:
        dataset = fetch_tree_task(storage, dataset_tree, str(scratch / "dataset"))
        initial = fetch_tree_task(storage, initial_tree, str(scratch / "initial")) if initial_tree else None
        trained = train(str(Path(dataset) / MANIFEST_NAME), manifest_digest, training_config,
                        str(scratch / "generations"), str(Path(initial) / ARTIFACT_NAME) if initial else None,
                        initial_digest, generation=generation)
        stored = store_tree_task(storage, trained.generation_dir, generation_name(name, generation))
    print(f"{stored.name} -> tree {stored.tree[:12]}: {trained.backend} {trained.version}")
    return stored


@flow(name="run-yaml", flow_run_name="{name}", log_prints=True)
def run_yaml(config: str, name: str = "run.yaml") -> RunSpecResult:
    """One unified run.yaml task: what it wrote is in the returned summary and the markdown artifact."""
    result = run_spec_task(config, task_name=name)
    for key, value in {"task": result.task, **result.outputs}.items():
        print(f"{key}: {value}")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("train", __doc__)
    parser.add_argument("--config", help="YAML with campaign/export/training sections (defaults: small ACE)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--store", help="train on the completed rows of this store (SQLite path or postgresql:// URL)")
    source.add_argument("--data", nargs="+", metavar="FILE", help="labelled structure files to ingest and train on")
    parser.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    parser.add_argument("--initial-potential", metavar="GEN_DIR",
                        help="fine-tune from this generation directory (or its artifact.json), or from the "
                             "generation a PotentialGeneration block NAME-gen-NNN describes")
    parser.add_argument("--name", help="publish as the block NAME-gen-NNN (default: the --out directory's name)")
    parser.add_argument("--storage", metavar="URL",
                        help="upload each generation there (s3://bucket/prefix, file:///path, or a "
                             "remote-file-system block name); the block records the objects' URLs and digests")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a configuration error")
    args = parser.parse_args(argv)
    if args.store:  # its password (if any) goes to PGPASSWORD, never into flow parameters
        args.store = password_to_environment(args.store)
    try:
        # The whole input is checked before a Prefect server, the output directory or a store is touched.
        is_run = bool(args.config) and is_run_spec(read_yaml_mapping(Path(args.config), kind="config file"))
        if is_run:
            if args.store or args.data or args.initial_potential:
                parser.error("a run.yaml says everything itself (data, model_in, run_dir): "
                             "drop --store/--data/--initial-potential")
            spec = checked_run_spec(args.config)
        else:
            if not (args.store or args.data):
                parser.error("one of the arguments --store --data is required (or --config with a run.yaml)")
            TrainRunConfig.load(args.config)
            missing = [path for path in args.data or [] if not Path(path).is_file()]
            if missing:
                raise ConfigError(f"{missing[0]}: no such data file (--data)")
            if args.initial_potential and not Path(args.initial_potential).exists() \
                    and not BLOCK_NAME.match(args.initial_potential):
                raise ConfigError(f"{args.initial_potential}: no such generation (--initial-potential)")
            check_writable(args.store or str(Path(args.out) / "structures.db"))
        if args.storage:
            try:
                check_no_credentials(args.storage)
            except ValueError as exc:
                raise ConfigError(f"--storage: {exc}") from None
    except (ConfigError, StoreError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cli.use_prefect_api()  # the configured Prefect API, else the local server (flows/cli.py)
    try:  # what lives in the Prefect server or in storage: checked, fetched (verified) before any flow run starts
        if args.storage:
            try:
                open_storage(args.storage).probe()  # unreachable or refused: say so before training
            except ObjectStoreError as exc:
                raise ValueError(f"--storage: {exc}") from None
        if is_run:
            with_model_in_resolved(spec)
        elif args.initial_potential:  # the flow run keeps the block name as its parameter and finds this download
            resolve_potential(args.initial_potential, Path(args.out) / "initial")
    except (ValueError, ObjectStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    try:
        if is_run:
            run_yaml(args.config, name=f"{spec.backend} {spec.task}")
            return 0
        result = train(out=args.out, config=args.config, store=args.store, data=args.data,
                       initial_potential=args.initial_potential, name=args.name, storage=args.storage)
    except (ConfigError, BackendError, ValueError, FileNotFoundError, NotImplementedError, ObjectStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"generation: {result.generation_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
