"""Ingest labelled structures into the store.

    python -m flows.ingest --store campaign/structures.db data.extxyz OUTCAR df.pckl.gzip

Reads anything ase.io reads with energies and forces, and Pacemaker's pickled DataFrame.
Bad frames are reported (file, frame, field) and skipped; the exit code is 1 if any were.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows import cli
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.store import check_writable
from mlip_autopipec.store.ingest import IngestReport
from mlip_autopipec.store.secrets import password_to_environment
from tasks.store import ingest_file_task


@flow(name="ingest", log_prints=True)
def ingest(store: str, files: list[str], campaign: str = "default", source: str = "ingest",
           generation: int = 0, min_distance: float = DEFAULT_MIN_DISTANCE) -> IngestReport:
    # One file at a time: the store serialises writers anyway, and the order stays readable.
    report = IngestReport([ingest_file_task(store, path, campaign, source, generation, min_distance)
                           for path in files])
    for problem in report.problems:
        print(f"rejected {problem}")
    print("\n" + report.summary())
    create_table_artifact(
        key="ingest-summary",
        table=[{"file": f.file, "accepted": f.accepted, "duplicates": f.duplicates,
                "rejected": f.rejected} for f in report.files],
        description=f"{report.accepted} accepted, {report.duplicates} duplicates, "
                    f"{report.rejected} rejected",
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("ingest", __doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="labelled structure files")
    parser.add_argument("--store", required=True, help="SQLite path or postgresql:// URL")
    parser.add_argument("--campaign", default="default")
    parser.add_argument("--source", default="ingest", help="provenance tag stored with each row")
    parser.add_argument("--generation", type=int, default=0)
    parser.add_argument("--min-distance", type=float, default=DEFAULT_MIN_DISTANCE,
                        help="reject frames with two atoms closer than this (Å)")
    args = parser.parse_args(argv)
    if args.store:  # its password (if any) goes to PGPASSWORD, never into flow parameters
        args.store = password_to_environment(args.store)
    missing = [path for path in args.files if not Path(path).is_file()]
    if missing:  # before a flow (and a Prefect server) starts, and before the store is created
        print(f"error: {missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
              file=sys.stderr)
        return 2
    try:
        check_writable(args.store)  # before a flow (and a Prefect server) starts
        with cli.prefect_api():
            report = ingest(args.store, args.files, args.campaign, args.source, args.generation, args.min_distance)
    except ValueError as exc:  # StoreError: names the store's path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if report.rejected else 0


if __name__ == "__main__":
    sys.exit(main())
