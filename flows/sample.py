"""Explore by sampling rules: actions, validators, quench, basin registry, DFT trigger.

    python -m flows.sample --out runs/sample-cu --structure start.json --config campaigns/sampling-rules.yaml \\
        --steps 200 --target-basins 5 --quench fire --quench-fmax 0.05
    python -m flows.sample ... --resume            # continue a run (killed or finished) up to --steps
    python -m flows.sample ... --model campaign/generations/gen-003   # a generation's potential (γ with ACE)

--structure is a JSON file (numbers or symbols, positions, cell, pbc, fixed, tags) or any file ASE
reads (FixAtoms constraints mark fixed atoms). --model is a generation directory, artifact.json,
Pacemaker .yaml/.yace (γ from the .asi beside it), MACE .model, a calculator name (default: emt), or a
PotentialGeneration block name (`cu-gen-003`): its generation is downloaded, verified, into OUT/model/.

Writes to --out: steps.jsonl (one line per attempted step), basins.jsonl, dft_queue.jsonl
(feed it to `python -m flows.outbox --queue`), structures/<step>.npz; prints the closing summary
(attempts_total, attempts_rejected, basins, candidates) and publishes the candidates as a table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.sampling import SamplingSummary, load_rules, read_structure
from mlip_autopipec.storage import ObjectStoreError
from tasks.blocks import resolve_potential
from tasks.sampling import sample_task

MODEL_DIR = "model"  # under --out: where a block's generation is downloaded


@flow(name="sample", log_prints=True)
def sample(structure: str, config: str, run_dir: str, steps: int, seed: int = 0, target_basins: int | None = None,
           resume: bool = False, model: str | None = None, device: str = "auto", quench: str | None = None,
           quench_fmax: float | None = None, quench_steps: int | None = None) -> SamplingSummary:
    if model is not None:
        model = resolve_potential(model, Path(run_dir) / MODEL_DIR)
    summary = sample_task(structure, config, run_dir, steps, seed, target_basins, resume, model, device,
                          quench, quench_fmax, quench_steps)
    print(summary_line(summary))
    return summary


def summary_line(summary: SamplingSummary) -> str:
    return f"{summary.line()} queue={summary.queue_file}"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("sample", __doc__, renames={"--run-dir": "--out"})
    parser.add_argument("--out", required=True,
                        help="output directory (steps.jsonl, basins.jsonl, dft_queue.jsonl, structures/)")
    parser.add_argument("--structure", required=True,
                        help="start structure: JSON (numbers/positions/cell/fixed/tags) or ASE-readable")
    parser.add_argument("--config", required=True, help="sampling rules YAML (see campaigns/sampling-rules.yaml)")
    parser.add_argument("--steps", type=int, required=True, help="attempted steps in the run directory in total")
    parser.add_argument("--target-basins", type=int, default=None, help="stop once this many new basins were found")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (appends)")
    parser.add_argument("--model", default=None,
                        help="generation dir, artifact.json, .yaml/.yace, .model, a calculator name (default: emt) "
                             "or a PotentialGeneration block name")
    parser.add_argument("--device", default="auto", help="device of a MACE model: auto, cpu, cuda")
    parser.add_argument("--quench", choices=["none", "fire", "cg", "bfgs", "lbfgs"], default=None,
                        help="optimizer of the quench (default: the rules' quench.method)")
    parser.add_argument("--quench-fmax", type=float, default=None, help="eV/Å (default: the rules' quench.fmax)")
    parser.add_argument("--quench-steps", type=int, default=None, help="(default: the rules' quench.steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    args = parser.parse_args(argv)
    try:
        # checked before Prefect starts, so a bad file fails in a second with its own message
        load_rules(args.config)
        read_structure(args.structure)
        with cli.prefect_api():
            if args.model is not None:  # fetched before the flow run: a missing block or object is one line
                resolve_potential(args.model, Path(args.out) / MODEL_DIR)
            summary = sample(args.structure, args.config, args.out, args.steps, args.seed, args.target_basins,
                             args.resume, args.model, args.device, args.quench, args.quench_fmax, args.quench_steps)
    except (FileNotFoundError, ValueError, ObjectStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary_line(summary))
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
