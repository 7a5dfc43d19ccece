"""Export the store's completed structures as a train/test split in training-ready formats.

    python -m flows.export --store campaign/structures.db --out dataset/ --test-fraction 0.1 --seed 0

Writes extxyz (ASE `energy`/`forces`), Pacemaker's pickled DataFrame and MACE's extxyz keys, plus
`manifest.json` with counts, elements, the split seed and a digest of every file. A --out
directory holding files an export did not write is refused unless --overwrite.
"""

from __future__ import annotations

import contextlib
import sys
import typing
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.data.manifest import ExportFormat

if typing.TYPE_CHECKING:
    from tasks.store import ExportedDataset


ALL_FORMATS = typing.get_args(ExportFormat)  # the library's export (ase.io) is imported when needed


@flow(name="export", log_prints=True)
def export(store: str, out: str, campaign: str = "default", test_fraction: float = 0.1, seed: int = 0,
           formats: list[str] = list(ALL_FORMATS), generation: int | None = None,
           source: str | None = None, overwrite: bool = False) -> ExportedDataset:
    from tasks.store import export_task

    result = export_task(store, campaign, out, test_fraction, seed, formats,
                         generation=generation, source=source, overwrite=overwrite)
    print(f"exported {result.counts['train']} train / {result.counts['test']} test frames "
          f"to {out} (manifest {result.digest[:12]})")
    return result


def _check_not_empty(store: str, campaign: str) -> None:
    """An empty store is a one-line error, not a flow run that fails (and no server is started for it).
    A SQLite store is looked at with the standard library alone (ase.db's tables: a row's keys are in
    text_key_values), so the check costs milliseconds rather than ase's and scipy's imports."""
    if store.startswith(("postgresql://", "postgres://")):
        from mlip_autopipec.store import StructureStore

        completed = StructureStore(store, campaign=campaign).status_counts().get("completed")
    elif not Path(store).is_file():
        raise ValueError(f"{store}: no such store")
    else:
        completed = _sqlite_completed_rows(store, campaign)
    if not completed:
        raise ValueError(f"nothing to export: {_redact(store)} has no completed structures in campaign {campaign!r}")


def _sqlite_completed_rows(path: str, campaign: str) -> int:
    import sqlite3

    query = ("SELECT count(*) FROM text_key_values s JOIN text_key_values c ON s.id = c.id WHERE s.key = 'status' "
             "AND s.value = 'completed' AND c.key = 'campaign' AND c.value = ?")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        try:
            return connection.execute(query, (campaign,)).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0  # a database ase.db never wrote a row to
            raise


def _redact(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    from mlip_autopipec.store.secrets import redact

    return redact(url)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("export", __doc__)
    parser.add_argument("--store", required=True, help="SQLite path or postgresql:// URL")
    parser.add_argument("--out", required=True, help="directory for the dataset files")
    parser.add_argument("--campaign", default="default")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", default=list(ALL_FORMATS), choices=ALL_FORMATS)
    parser.add_argument("--generation", type=int, default=None, help="only this generation's rows")
    parser.add_argument("--source", default=None, help="only rows with this source tag")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a --out directory that holds files an export did not write")
    args = parser.parse_args(argv)
    if args.store.startswith(("postgresql://", "postgres://")):  # a password goes to PGPASSWORD, not to flows
        from mlip_autopipec.store.secrets import password_to_environment

        args.store = password_to_environment(args.store)
    try:
        _check_not_empty(args.store, args.campaign)  # before a flow (and a Prefect server) starts
        from mlip_autopipec.data.export import check_export_target

        check_export_target(args.out, args.overwrite)
        with cli.prefect_api():
            export(args.store, args.out, args.campaign, args.test_fraction, args.seed, args.formats,
                   args.generation, args.source, args.overwrite)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
