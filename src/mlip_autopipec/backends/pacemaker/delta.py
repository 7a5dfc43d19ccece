"""Delta learning: the ACE potential learns the labels minus a baseline ASE calculator.

The baseline is evaluated here, in this process, before pacemaker starts; the delta dataset
is written into the generation directory so that the fit can be repeated and inspected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import DatasetError


def write_delta_dataframe(source: Path, target: Path, baseline: Calculator, baseline_name: str) -> int:
    """Subtract the baseline's energy and forces from every row of `source`; return rows written."""
    import pandas as pd

    table = pd.read_pickle(source, compression="gzip")
    energies, forces = [], []
    for index, atoms in enumerate(table["ase_atoms"]):
        atoms = atoms.copy()
        atoms.calc = baseline
        try:
            energies.append(float(atoms.get_potential_energy()))
            forces.append(np.asarray(atoms.get_forces(), dtype=float))
        except Exception as exc:  # any calculator error: name the frame, keep the cause
            raise DatasetError(f"{source}: frame {index}: baseline {baseline_name} failed "
                               f"({type(exc).__name__}: {exc})") from exc
    baseline_energy = np.array(energies)
    for column in ("energy", "energy_corrected"):
        if column in table.columns:
            table[column] = table[column].to_numpy(dtype=float) - baseline_energy
    table["forces"] = [np.asarray(label, dtype=float) - base
                       for label, base in zip(table["forces"], forces, strict=True)]
    # mtime=0: the same data always gives the same bytes, hence the same digest.
    table.to_pickle(target, compression={"method": "gzip", "mtime": 0}, protocol=4)
    return len(table)
