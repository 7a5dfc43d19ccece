"""Quench: relax a structure with the model to the bottom of its basin (ASE optimizers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.optimize import BFGS, FIRE, LBFGS
from ase.optimize.sciopt import SciPyFminCG

OPTIMIZERS = {"fire": FIRE, "bfgs": BFGS, "lbfgs": LBFGS, "cg": SciPyFminCG}


@dataclass
class QuenchResult:
    atoms: Atoms  # calculator-free, FixAtoms kept
    energy: float
    forces: np.ndarray
    steps: int
    converged: bool


def quench(atoms: Atoms, calculator, method: str = "fire", fmax: float = 0.05, steps: int = 200) -> QuenchResult:
    """Relax positions (cell fixed; FixAtoms respected). `method="none"` only evaluates the model."""
    work = atoms.copy()
    work.calc = calculator
    taken, converged = 0, False
    if method != "none":
        optimizer = OPTIMIZERS[method](work, logfile=None)
        converged = bool(optimizer.run(fmax=fmax, steps=steps))
        taken = int(optimizer.get_number_of_steps())
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(apply_constraint=False))
    if method == "none":
        converged = bool(np.abs(work.get_forces()).max(initial=0.0) <= fmax) if len(work) else True
    work.calc = None
    return QuenchResult(work, energy, forces, taken, converged)
