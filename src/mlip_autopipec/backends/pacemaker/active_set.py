"""The active set for the extrapolation grade γ when a species has too few training environments.

`pace_activeset` stops for the whole potential ("Insufficient atomic environments ...") as soon as
one species (a dopant, an adsorbate) has fewer environments than B-functions. The trainer then runs
this module (`python -m mlip_autopipec.backends.pacemaker.active_set`), which builds the same file
species by species:

* enough environments: MaxVol with pyace's `compute_active_set` (as `pace_activeset --all-atoms`);
* fewer: the pseudo-inverse of all its environments, zero rows filling the matrix up to square
  (what PyACECalculator and LAMMPS `pair_style pace/extrapolation` load). Its γ is about 1 for
  environments like the known ones but blind to directions they do not span, so such species are
  listed as having no γ yet; selection treats their atoms as uncertain until a generation has
  enough of them. (A regularised inverse would need a tuned regulariser and still hide those
  directions; fewer functions for the rare species would change the potential itself.)

The summary (`active_set.json`) names, per species, its environments, functions and method.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# pace_activeset's message when a species has fewer environments than B-functions.
UNDER_DETERMINED_MESSAGE = "Insufficient atomic environments"
MAXVOL = "maxvol"
PSEUDO_INVERSE = "pseudo-inverse"


@dataclass(frozen=True)
class SpeciesActiveSet:
    """How one species' part of the active set was built."""

    element: str
    environments: int  # atoms of this species in the training data
    functions: int  # its B-functions (projections per atom)
    method: str  # MAXVOL (real γ) or PSEUDO_INVERSE (no γ yet)
    note: str = ""  # why MaxVol was not used, when it was not

    @property
    def has_gamma(self) -> bool:
        return self.method == MAXVOL

    def reason(self) -> str:
        """Why this species has no γ yet, for records and reports."""
        why = self.note or (f"{self.environments} training environments for {self.functions} B-functions "
                            "(under-determined)")
        return (f"{why}: its γ is a pseudo-inverse projection onto those environments, blind to what they "
                "do not span; selection treats its atoms as uncertain until a generation has enough of them")


def build_active_set(potential_yaml: str | Path, structures: Sequence, gamma_tolerance: float = 1.01,
                     maxvol_iters: int = 300) -> tuple[dict[str, np.ndarray], list[SpeciesActiveSet]]:
    """The inverted active set per element (square, as a .asi holds it) and how each was built."""
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    pyace = import_pyace()
    activelearning = import_pyace("pyace.activelearning")
    basis = pyace.ACEBBasisSet(pyace.BBasisConfiguration(str(potential_yaml)))
    functions = activelearning.compute_number_of_functions(basis)
    projections = activelearning.compute_B_projections(basis, list(structures))
    inverse, species = {}, []
    for element, index in sorted(basis.elements_to_index_map.items(), key=lambda item: item[1]):
        rows = np.asarray(projections.get(index, np.zeros((0, functions[index]))), dtype=float)
        count, width = rows.shape[0], functions[index]
        note = ""
        if count >= width:
            try:
                active = activelearning.compute_active_set({index: rows.copy()}, tol=gamma_tolerance,
                                                           max_iters=maxvol_iters)[index]
                inverse[element] = activelearning.compute_A_active_inverse({index: active})[index]
                species.append(SpeciesActiveSet(element, count, width, MAXVOL))
                continue
            except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. a singular selection
                note = f"MaxVol failed on {count} environments ({type(exc).__name__}: {exc})"
        elif count == 0:
            note = "no environments of this element in the training data"
        inverse[element] = pseudo_inverse(rows, width)
        species.append(SpeciesActiveSet(element, count, width, PSEUDO_INVERSE, note))
    return inverse, species


def pseudo_inverse(rows: np.ndarray, functions: int) -> np.ndarray:
    """Moore-Penrose inverse of the environments as a square (functions x functions) matrix: fewer
    environments than functions are filled up with zero rows (which only add zero columns, so γ is
    that of the plain pseudo-inverse); of more (MaxVol failed on a rank-deficient set), the
    `functions` most independent ones are kept (QR with column pivoting)."""
    rows = np.asarray(rows, dtype=float)
    if len(rows) > functions:
        from scipy.linalg import qr

        _, _, pivots = qr(rows.T, mode="economic", pivoting=True)
        rows = rows[np.sort(pivots[:functions])]
    square = np.zeros((functions, functions))
    square[:len(rows)] = rows
    return np.linalg.pinv(square)


def write_active_set(inverse: dict[str, np.ndarray], path: str | Path) -> Path:
    """The .asi file as pace_activeset writes it: an npz archive keyed by element."""
    from mlip_autopipec.files import atomic_path

    with atomic_path(path) as staging, open(staging, "wb") as handle:
        np.savez(handle, **inverse)
    return Path(path)


def write_summary(species: Sequence[SpeciesActiveSet], path: str | Path) -> Path:
    from mlip_autopipec.files import atomic_write_text

    content = {"species": [{**asdict(s), "has_gamma": s.has_gamma} for s in species]}
    return atomic_write_text(path, json.dumps(content, indent=1) + "\n")


def read_summary(path: str | Path) -> list[SpeciesActiveSet]:
    entries = json.loads(Path(path).read_text())["species"]
    return [SpeciesActiveSet(**{key: value for key, value in entry.items() if key != "has_gamma"})
            for entry in entries]


def species_without_gamma(species: Sequence[SpeciesActiveSet]) -> dict[str, str]:
    """Element -> why its atoms have no γ yet (empty when every species has its MaxVol active set)."""
    return {s.element: s.reason() for s in species if not s.has_gamma}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlip_autopipec.backends.pacemaker.active_set",
        description="Active set per species (MaxVol where a species has enough environments, "
                    "pseudo-inverse where it has fewer than its B-functions)")
    parser.add_argument("potential_file", help="B-basis potential (.yaml)")
    parser.add_argument("-d", "--dataset", required=True, help="pacemaker DataFrame (fitting_data_info.pckl.gzip)")
    parser.add_argument("-g", "--gamma_tolerance", type=float, default=1.01)
    parser.add_argument("-i", "--maxvol_iters", type=int, default=300)
    parser.add_argument("-o", "--output", required=True, help="the .asi file to write")
    parser.add_argument("-s", "--summary", required=True, help="the per-species JSON summary to write")
    args = parser.parse_args(argv)

    import pandas as pd

    try:
        table = pd.read_pickle(args.dataset, compression="gzip")
        structures = list(table["ase_atoms"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        print(f"error: {args.dataset}: cannot read the structures ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    if not Path(args.potential_file).is_file():
        print(f"error: {args.potential_file}: no such potential file", file=sys.stderr)
        return 2
    try:
        inverse, species = build_active_set(args.potential_file, structures, args.gamma_tolerance,
                                            args.maxvol_iters)
    except (RuntimeError, ValueError) as exc:  # pyace: not a B-basis potential, or elements it lacks
        print(f"error: {args.potential_file}: cannot build the active set ({exc})", file=sys.stderr)
        return 2
    for s in species:
        print(f"active set: {s.element}: {s.environments} environments, {s.functions} functions -> {s.method}"
              + (f" ({s.note})" if s.note else ""))
    write_active_set(inverse, args.output)
    write_summary(species, args.summary)
    print(f"active set written to {args.output}; species without γ yet: "
          f"{', '.join(species_without_gamma(species)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
