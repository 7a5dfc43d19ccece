"""DFT outbox: canonicalize candidates, drop exact and near duplicates, queue the rest for DFT.

    python -m flows.outbox --queue run/dft_queue.jsonl more.extxyz --store campaign/structures.db --out outbox/

Candidates are deduplicated against each other, against the queue submitted by earlier runs
(OUT/dft_submit.jsonl, appended to) and against the store's rows; survivors enter the store as
pending. This run's skips go to OUT/dft_skip.jsonl with the reason (exact|near) and the duplicated id.
Running it twice submits nothing new.

A near duplicate within --tolerance has a translation, a same-species permutation and an
equivalent cell under which every atom lies within the tolerance of its partner (the criterion of
pymatgen's StructureMatcher, in Å); a one-atom move beyond it, or another ordering of an alloy, is
always submitted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows import cli
from mlip_autopipec.outbox import DEFAULT_NEAR_TOLERANCE, OutboxReport
from mlip_autopipec.store import check_writable
from mlip_autopipec.store.secrets import password_to_environment
from tasks.outbox import outbox_task


@flow(name="outbox", log_prints=True)
def outbox(queue: list[str], store: str | None, out: str, tolerance: float = DEFAULT_NEAR_TOLERANCE,
           campaign: str = "default", generation: int = 0, source: str = "outbox") -> OutboxReport:
    report = outbox_task(queue, store, out, tolerance, campaign, generation, source)
    print(report.summary())
    counts = report.counts
    create_table_artifact(
        key="dft-outbox",
        table=[{"outcome": name, "count": value} for name, value in counts.items()],
        description=report.summary(),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("outbox", __doc__)
    parser.add_argument("--queue", nargs="+", required=True, metavar="FILE",
                        help="dft_queue.jsonl files (numbers/positions/cell/pbc, optional id) or ASE-readable files")
    parser.add_argument("--store", default=None, help="SQLite path or postgresql:// URL (omit: no store)")
    parser.add_argument("--out", required=True, help="directory of dft_submit.jsonl and dft_skip.jsonl")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_NEAR_TOLERANCE,
                        help="near-duplicate tolerance (Å): skipped only if every atom lies this close to its partner")
    parser.add_argument("--campaign", default="default")
    parser.add_argument("--generation", type=int, default=0)
    parser.add_argument("--source", default="outbox", help="provenance tag of the pending store rows")
    args = parser.parse_args(argv)
    if args.store:  # its password (if any) goes to PGPASSWORD, never into flow parameters
        args.store = password_to_environment(args.store)
    missing = [path for path in args.queue if not Path(path).is_file()]
    try:  # before a flow (and a Prefect server) starts
        if missing:
            raise ValueError(f"{missing[0]}: no such queue file")
        if args.store:
            check_writable(args.store)
    except ValueError as exc:  # StoreError too: names the store's path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with cli.prefect_api():
        report = outbox(args.queue, args.store, args.out, args.tolerance, args.campaign, args.generation,
                        args.source)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
