"""Calculators that fail on purpose, for fault injection into the labelling worker.

Each is EMT, except on structures that contain `element` (every structure when it is None),
where it fails its own way. The worker imports them by path, e.g.
CalculatorSpec(factory="tests.labeling.faulty_calculators:Crashing", kwargs={"element": "Ni"}).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT


class _FaultyEMT(EMT):
    def __init__(self, element: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.element = element

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if self.element is None or self.element in atoms.get_chemical_symbols():
            self.misbehave()
        super().calculate(atoms, properties, system_changes)

    def misbehave(self) -> None:
        """Fail before calculating; subclasses that corrupt results override calculate instead."""


class Crashing(_FaultyEMT):
    def misbehave(self) -> None:
        raise RuntimeError("SCF exploded on purpose")


class Aborting(_FaultyEMT):
    def misbehave(self) -> None:
        print("about to abort", flush=True)
        os.abort()  # SIGABRT, as a segfaulting Fortran code would die


class Hanging(_FaultyEMT):
    def misbehave(self) -> None:
        time.sleep(3600)


class NaNForces(_FaultyEMT):
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        EMT.calculate(self, atoms, properties, system_changes)
        if self.element is None or self.element in atoms.get_chemical_symbols():
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


class Flaky(_FaultyEMT):
    """Fails the first attempt at each structure; the marker lives in the worker's job directory."""

    def misbehave(self) -> None:
        marker = Path("flaky-attempted")
        if not marker.exists():
            marker.touch()
            raise RuntimeError("transient failure on purpose")


class HangingWhileFlagged(EMT):
    """EMT, but first waits (up to `max_s`) while `flag_dir`/<job directory name> exists, e.g.
    flag_dir/structure-7: a test holds one structure's job running until it removes the flag."""

    def __init__(self, flag_dir: str, max_s: float = 120.0, **kwargs):
        super().__init__(**kwargs)
        self.flag_dir, self.max_s = flag_dir, max_s

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        flag = Path(self.flag_dir) / Path.cwd().name
        deadline = time.monotonic() + self.max_s
        while flag.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        super().calculate(atoms, properties, system_changes)
