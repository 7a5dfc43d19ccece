"""Validate a trained potential on labelled data, with physical checks against a reference labeler.

    python -m flows.validate --potential campaign/generations/gen-003 --data test.extxyz --out report/
    python -m flows.validate --potential gen-003/ --data a.extxyz b.pckl.gzip --out report/ \\
        --reference emt --structure Cu --crystal fcc --lattice 3.61

Writes `validation_metrics.json` (energy/force RMSE and MAE, per-element forces, worst frames,
equation of state and cubic elastic constants with relative errors), `report.md` and PNG plots
(parity, error histograms, γ histogram when the potential reports γ, EOS curve) to --out, and
publishes the report as Prefect markdown and table artifacts.

--potential is a generation directory, its artifact.json, a Pacemaker .yaml/.yace, a MACE .model, or
a PotentialGeneration block name (`cu-gen-003`): its generation is downloaded, verified, into OUT/potential/.
Physical checks run when --structure or --reference is given (the structure defaults to the first
element of the data in ASE's reference crystal; for non-periodic data, molecules, they are skipped
unless --structure is given). A check that does not apply or fails is skipped with its reason in the
report; the errors and the report are written either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from flows import cli
from mlip_autopipec.storage import ObjectStoreError
from mlip_autopipec.validation.results import ValidationSummary
from tasks.blocks import BLOCK_NAME, resolve_potential
from tasks.validation import validate_task

POTENTIAL_DIR = "potential"  # under --out: where a block's generation is downloaded


@flow(name="validate", log_prints=True)
def validate(potential: str, data: list[str], out: str, reference: str | None = None,
             structure: str | None = None, crystal: str | None = None, lattice: float | None = None,
             key: str | None = None, physical_skipped: str | None = None) -> ValidationSummary:
    potential = resolve_potential(potential, Path(out) / POTENTIAL_DIR)
    result = validate_task(potential, data, out, reference, structure, crystal, lattice, key, physical_skipped)
    test = result.test_set
    print(f"{result.title}: energy RMSE {test['energy_rmse_mev_per_atom']:.2f} meV/atom, "
          f"forces RMSE {test['forces_rmse_mev_per_angstrom']:.1f} meV/Å on {result.frames} structures")
    physical = result.physical
    if physical and "skipped" in physical:
        print(f"physical checks skipped: {physical['skipped']}")
    elif physical:
        mine = physical["potential"]["scalars"]
        rel = physical["relative_errors"]
        print("physical: " + ", ".join(
            f"{name} {value:.4g}" + (f" ({100 * rel[name]:+.1f} %)" if name in rel else "")
            for name, value in mine.items()))
    print(f"report: {result.report_file}")
    return result


def _default_structure(paths: list[str]) -> tuple[str | None, str | None]:
    """(element of the crystal to check, None) from the data's first frame, or (None, why not)."""
    from mlip_autopipec.validation.report import load_validation_frames

    frames, _, _ = load_validation_frames(paths[:1])
    if not any(frame.atoms.pbc.any() for frame in frames):
        return None, (f"the data ({paths[0]}) are non-periodic (molecules or clusters): the equation of state "
                      "and elastic constants of a bulk crystal do not apply; give --structure to check one anyway")
    return frames[0].atoms.get_chemical_symbols()[0], None


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("validate", __doc__)
    parser.add_argument("--potential", required=True, help="generation directory, artifact.json, .yaml/.yace, .model or a "
                        "PotentialGeneration block name")
    parser.add_argument("--data", required=True, nargs="+", help="labelled frames (extxyz, Pacemaker .pckl.gzip, ...)")
    parser.add_argument("--out", required=True, help="directory for validation_metrics.json, report.md and plots")
    parser.add_argument("--reference", default=None,
                        help="reference calculator for physical checks: emt, gpaw, module:callable")
    parser.add_argument("--structure", default=None, help="element of the crystal for physical checks, e.g. Cu")
    parser.add_argument("--crystal", default=None, help="fcc, bcc, sc, diamond (default: ASE's reference state)")
    parser.add_argument("--lattice", type=float, default=None, help="cubic lattice constant in Å (default: ASE's)")
    parser.add_argument("--key", default=None, help="Prefect artifact key prefix (default: from the potential)")
    args = parser.parse_args(argv)
    for path in [args.potential, *args.data]:
        if not Path(path).exists() and not (path == args.potential and BLOCK_NAME.match(path)):
            print(f"error: {path} does not exist", file=sys.stderr)
            return 1
    try:
        structure, skipped = args.structure, None
        if structure is None and (args.reference or args.crystal or args.lattice):
            structure, skipped = _default_structure(args.data)
        with cli.prefect_api():
            # fetched before the flow run, so a missing block or object is one line, not a failed run
            resolve_potential(args.potential, Path(args.out) / POTENTIAL_DIR)
            validate(args.potential, args.data, args.out, args.reference, structure, args.crystal, args.lattice,
                     args.key, skipped)
    except (FileNotFoundError, ValueError, ObjectStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
