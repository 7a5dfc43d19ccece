"""Label the pending structures of a store with an ASE calculator, one worker process per structure.

    python -m flows.label --store campaign/structures.db --calculator emt
    python -m flows.label --store DB --calculator gpaw --calculator-kwargs '{"mode": "pw", "xc": "PBE"}' \\
        --timeout 7200 --workers 4

A structure whose calculation crashes, hangs past --timeout or returns unusable labels is marked
failed with the reason and tried again, up to --max-attempts tries in all. Failures are reported
(printed, and the table artifact "<campaign>-labels"), never fatal: the exit code is 0 unless the
command line itself is wrong (2). After a labeller was killed, --recover-running sends the rows
it left `running` back to pending; use it only when no other labeller works on the campaign.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefect import flow
from pydantic import ValidationError

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import DEFAULT_TIMEOUT_S
from tasks.labeling import label_task


@flow(name="label")
def label(store: str, calculator: dict, campaign: str = "default", generation: int | None = None,
          timeout_s: float = DEFAULT_TIMEOUT_S, max_attempts: int = 3, workers: int = 1,
          workdir: str | None = None, limit: int | None = None, recover_running: bool = False) -> dict:
    """Label pending rows; `calculator` is a CalculatorSpec as dict. The task logs every failure."""
    return label_task(store, campaign, calculator, generation=generation, max_attempts=max_attempts,
                      timeout_s=timeout_s, workers=workers, workdir=workdir, limit=limit,
                      recover_running=recover_running)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.label", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--workers", type=int, default=1, help="structures computed at once (default: 1)")
    parser.add_argument("--limit", type=int, help="label at most this many pending structures")
    parser.add_argument("--workdir",
                        help="job directories (default: labeling/<campaign> beside a SQLite store)")
    parser.add_argument("--recover-running", action="store_true",
                        help="first requeue rows a killed labeller left running")
    args = parser.parse_args(argv)

    try:
        kwargs = json.loads(args.calculator_kwargs)
        spec = CalculatorSpec(factory=args.calculator, kwargs=kwargs)
    except (json.JSONDecodeError, ValidationError) as exc:
        parser.error(f"--calculator/--calculator-kwargs: {exc}")
    is_server = args.store.startswith(("postgresql://", "postgres://"))
    if not is_server and not Path(args.store).is_file():
        parser.error(f"--store {args.store}: no such file")
    if is_server and args.workdir is None:
        parser.error("--workdir is needed with a server store")
    if min(args.workers, args.max_attempts) < 1 or args.timeout <= 0 or (args.limit or 0) < 0:
        parser.error("--workers and --max-attempts must be >= 1, --timeout > 0, --limit >= 0")

    result = label(args.store, spec.model_dump(), campaign=args.campaign, generation=args.generation,
                   timeout_s=args.timeout, max_attempts=args.max_attempts, workers=args.workers,
                   workdir=args.workdir, limit=args.limit, recover_running=args.recover_running)
    for error in result["failures"].values():
        print(f"failed: {error}")
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
