"""Action-quality report of a sampling run, from its steps.jsonl.

    python -m flows.action_quality --run-dir runs/sample-cu

Per action type: attempts, rejection rate and reasons, largest atomic force before and after the
quench, new-basin rate and DFT-trigger rate. Printed as a table, written to action_quality.json,
action_quality.md and action_quality.png (in --out, default --run-dir) and published as Prefect
table and markdown artifacts.
"""

from __future__ import annotations

import sys

from prefect import flow

from flows import cli
from mlip_autopipec.sampling.action_quality import table_text
from tasks.sampling import action_quality_task


@flow(name="action-quality", log_prints=True)
def action_quality(run_dir: str, out: str | None = None) -> dict:
    report = action_quality_task(run_dir, out)
    print(table_text(report["rows"]))
    print(f"report: {report['markdown']}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("action_quality", __doc__)
    parser.add_argument("--run-dir", required=True, help="a sampling run directory (holds steps.jsonl)")
    parser.add_argument("--out", default=None, help="where the report files go (default: --run-dir)")
    args = parser.parse_args(argv)
    try:
        with cli.prefect_api():
            report = action_quality(args.run_dir, args.out)
        print(table_text(report["rows"]))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
