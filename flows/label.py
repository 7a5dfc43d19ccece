"""Label the pending structures of a store with an ASE calculator, one worker process per structure.

    python -m flows.label --store campaign/structures.db --calculator emt --workers 4
    python -m flows.label --store DB --calculator gpaw --calculator-kwargs '{"mode": "pw", "xc": "PBE"}' \\
        --timeout 7200 --workers 4 --task-runner dask
    python -m flows.label --store postgresql://... --out /shared/jobs --dask-address tcp://scheduler:8786
    python -m flows.label --store DB --calculator gpaw --calculator-kwargs '{"mode": "pw"}' --out /scratch/jobs \
        --slurm '{"partition": "compute", "ntasks": 4, "mpi_command": "srun", "walltime": "04:00:00"}'

Each structure is one Prefect task ("label structure <id>") on the flow's task runner: Prefect's
thread pool (default), a temporary local Dask cluster of --workers processes (--task-runner dask),
or a running Dask cluster (--dask-address). --workers structures are in flight at once. With a
remote cluster the store and --out must be reachable from its workers under the same URL/path.
With --slurm (SlurmSettings as JSON, see config/execution.py) the structures go to SLURM instead:
one sbatch job per batch of structures_per_job, watched from here; --out must be shared with
the compute nodes, the store need not be.

A structure whose calculation crashes, hangs past --timeout or returns unusable labels is marked
failed with the reason and tried again, up to --max-attempts tries in all. Failures are reported
(printed, and the table artifact "<campaign>-labels"), never fatal: the exit code is 0 unless the
command line itself is wrong (2). After a labeller was killed, --recover-running sends the rows
it left `running` back to pending; use it only when no other labeller works on the campaign.
A failed structure records which labeler failed it: labelling with a different one (a typo fixed,
other settings) makes those rows pending again with their attempts reset, and says so;
--retry-failed does that for every failed row.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import ValidationError

from flows import cli
from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.campaign.config import load_labeling
from mlip_autopipec.campaign.travel import scratch_directory
from mlip_autopipec.config.execution import ExecutionSettings, SlurmSettings
from mlip_autopipec.labeling import (DEFAULT_TIMEOUT_S, CancelFile, LabelingRun, LabelReport, check_settings,
                                     fan_out, job_root, label_pending_slurm)
from mlip_autopipec.store import StoreError, StructureStore, check_writable
from mlip_autopipec.store.secrets import password_to_environment
from tasks.labeling import label_row_task, publish_label_report
from tasks.runners import build_task_runner, prefect_api_for_workers
from tasks.storage import open_storage


@flow(name="label")
def label(store: str, calculator: dict | None = None, campaign: str = "default", generation: int | None = None,
          timeout_s: float = DEFAULT_TIMEOUT_S, max_attempts: int = 3, workers: int = 1,
          workdir: str | None = None, limit: int | None = None, recover_running: bool = False,
          retry_failed: bool = False, slurm: dict | None = None, campaign_file: str | None = None,
          labeling_digest: str | None = None, storage: str | None = None,
          campaign_digest: str | None = None) -> LabelReport:
    """Label pending rows, `workers` at a time, one task per structure on this flow's task runner
    (choose it with `label.with_options(task_runner=build_task_runner(settings))`); `calculator` is a
    CalculatorSpec as dict; with `slurm` (SlurmSettings as dict) as SLURM batch jobs instead. A
    campaign passes its file and the digest of its `labeling:` section instead of both (its labeler's
    settings stay out of the run's recorded parameters). A campaign on another machine passes
    `storage` and the file's digest instead of its path: the file is fetched from there, and without
    `workdir` the job directories are a scratch directory of this worker, removed at the end.
    Returns the LabelReport; the failures are logged."""
    check_settings(workers=workers, timeout_s=timeout_s, max_attempts=max_attempts, limit=limit)
    if storage is None:
        return _label(store, calculator, campaign, generation, timeout_s, max_attempts, workers, workdir, limit,
                      recover_running, retry_failed, slurm, campaign_file, labeling_digest)
    if campaign_digest is None:
        raise ValueError("label with storage needs campaign_digest: the campaign file's digest there")
    with scratch_directory("label-") as scratch:
        fetched = open_storage(storage).get_file(campaign_digest, scratch / "campaign.yaml")
        get_run_logger().info(f"fetched campaign file {campaign_digest[:12]} ({fetched.stat().st_size} bytes)")
        return _label(store, calculator, campaign, generation, timeout_s, max_attempts, workers,
                      workdir or str(scratch / "jobs"), limit, recover_running, retry_failed, slurm,
                      str(fetched), labeling_digest)


def _label(store: str, calculator: dict | None, campaign: str, generation: int | None, timeout_s: float,
           max_attempts: int, workers: int, workdir: str | None, limit: int | None, recover_running: bool,
           retry_failed: bool, slurm: dict | None, campaign_file: str | None,
           labeling_digest: str | None) -> LabelReport:
    if campaign_file is not None:
        labeling = load_labeling(campaign_file, labeling_digest)
        calculator, slurm = labeling.calculator, labeling.slurm
    if calculator is None:
        raise ValueError("label needs a calculator, or the campaign file to take it from")
    spec = CalculatorSpec.model_validate(calculator)
    structures = StructureStore(store, campaign=campaign)
    if slurm is not None:
        report = label_pending_slurm(structures, spec, SlurmSettings.model_validate(slurm), limit=limit,
                                     generation=generation, timeout_s=timeout_s, max_attempts=max_attempts,
                                     workdir=workdir, recover_running=recover_running, retry_failed=retry_failed)
        publish_label_report(campaign, report)
        return report
    root = job_root(structures, workdir).absolute()  # the same path on every worker
    store_url = store if structures.is_server else str(Path(store).absolute())
    run = LabelingRun(structures, spec, limit=limit, generation=generation, max_attempts=max_attempts,
                      recover_running=recover_running, retry_failed=retry_failed)
    if run.report.reset:
        get_run_logger().warning(f"{len(run.report.reset)} failed structures are pending again: "
                                 f"{run.report.reset_reason}")
    cancel = CancelFile(root / f".cancel-{uuid.uuid4().hex}")

    def submit(row_id: int):
        return label_row_task.submit(store_url, campaign, row_id, spec.model_dump(mode="json"), str(root),
                                     timeout_s=timeout_s, cancel_file=str(cancel.path))

    try:
        report = fan_out(run, submit, workers, on_interrupt=cancel.set)
    finally:
        cancel.path.unlink(missing_ok=True)
    publish_label_report(campaign, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("label", __doc__, renames={"--workdir": "--out"})
    parser.add_argument("--store", required=True, help="SQLite path or postgresql:// URL")
    parser.add_argument("--calculator", default="emt",
                        help="emt, lj, morse, gpaw or module:callable (default: emt)")
    parser.add_argument("--calculator-kwargs", default="{}", metavar="JSON",
                        help="keyword arguments for the calculator, as a JSON object")
    parser.add_argument("--campaign", default="default")
    parser.add_argument("--generation", type=int, help="label only this generation (default: all)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="per structure and attempt; the worker is then killed "
                             f"(default: {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--max-attempts", type=int, default=3, help="tries per structure (default: 3)")
    parser.add_argument("--workers", type=int, default=1,
                        help="structures computed at once; threads or local Dask workers (default: 1)")
    parser.add_argument("--task-runner", choices=["threads", "dask"],
                        help="where the per-structure tasks run (default: threads, or dask with --dask-address)")
    parser.add_argument("--dask-address", metavar="ADDRESS",
                        help="scheduler of a running Dask cluster, e.g. tcp://host:8786 (default: start a "
                             "temporary LocalCluster)")
    parser.add_argument("--slurm", metavar="JSON",
                        help="label as SLURM batch jobs with these SlurmSettings, e.g. '{\"partition\": \"compute\", "
                             "\"ntasks\": 4, \"mpi_command\": \"srun\"}' ('{}': the defaults)")
    parser.add_argument("--limit", type=int, help="label at most this many pending structures")
    parser.add_argument("--out", dest="workdir",
                        help="job directories (default: labeling/<campaign> beside a SQLite store)")
    parser.add_argument("--recover-running", action="store_true",
                        help="first requeue rows a killed labeller left running")
    parser.add_argument("--retry-failed", action="store_true",
                        help="first make every failed row pending again, its attempts reset (rows another "
                             "labeler failed are always retried)")
    args = parser.parse_args(argv)
    if args.store:  # its password (if any) goes to PGPASSWORD, never into flow parameters
        args.store = password_to_environment(args.store)

    try:
        kwargs = json.loads(args.calculator_kwargs)
        spec = CalculatorSpec(factory=args.calculator, kwargs=kwargs)
    except (json.JSONDecodeError, ValidationError) as exc:
        parser.error(f"--calculator/--calculator-kwargs: {exc}")
    try:
        spec.resolve()  # a mistyped module:callable is found here, not once per structure
    except ValueError as exc:
        parser.error(f"--calculator: {exc}")
    is_server = args.store.startswith(("postgresql://", "postgres://"))
    if not is_server and not Path(args.store).is_file():
        parser.error(f"--store {args.store}: no such file")
    try:
        check_writable(args.store)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if is_server and args.workdir is None:
        parser.error("--out is needed with a server store")
    if min(args.workers, args.max_attempts) < 1 or args.timeout <= 0 or (args.limit or 0) < 0:
        parser.error("--workers and --max-attempts must be >= 1, --timeout > 0, --limit >= 0")
    slurm = None
    if args.slurm is not None:
        if args.task_runner or args.dask_address:
            parser.error("--slurm submits SLURM jobs from this process: no --task-runner or --dask-address with it")
        try:
            slurm = SlurmSettings.model_validate_json(args.slurm).model_dump(mode="json")
        except ValidationError as exc:
            parser.error(f"--slurm: {exc}")
    try:
        execution = ExecutionSettings(task_runner=args.task_runner or ("dask" if args.dask_address else "threads"),
                                      workers=args.workers, dask_address=args.dask_address)
    except ValidationError as exc:
        parser.error(f"--task-runner/--dask-address: {exc.errors()[0]['msg']}")

    cli.use_prefect_api()  # the configured Prefect API, else the local server (flows/cli.py)
    labelled = label.with_options(task_runner=build_task_runner(execution))
    with prefect_api_for_workers(execution):
        report = labelled(args.store, spec.model_dump(), campaign=args.campaign, generation=args.generation,
                          timeout_s=args.timeout, max_attempts=args.max_attempts, workers=args.workers,
                          workdir=args.workdir, limit=args.limit, recover_running=args.recover_running,
                          retry_failed=args.retry_failed, slurm=slurm)
    for error in report.failed.values():
        print(f"failed: {error}")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
