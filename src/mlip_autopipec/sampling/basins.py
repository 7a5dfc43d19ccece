"""Basin registry: is a quenched structure a basin seen before?

Two quenched structures are the same basin when their canonical fingerprints (grid of `tolerance`
Å; invariant to translation, permutation, wrapping and choice of cell) agree, or, since a point can
fall either side of a grid line, when they have the same composition, energies per atom within
`energy_tolerance` and species-resolved sorted-neighbour-distance descriptors within `tolerance` Å.

Unlike the outbox, a basin is not confirmed atom by atom: a quench stops at a force threshold, so
two quenches into one minimum can leave a soft atom (an adatom sliding in its hollow) more than
`tolerance` apart. Energy is the discriminating test here; the descriptor, which hardly moves when
one atom of many moves, only rules out different species arrangements and different local shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mlip_autopipec.store.fingerprint import fingerprint
from mlip_autopipec.outbox.descriptor import composition_key, descriptor

# fcc and hcp hollows of an adatom differ first in its second shell: a longer reach than the outbox's
BASIN_CUTOFF_PER_RADIUS = 5.0


@dataclass
class Basin:
    id: int
    fingerprint: str
    energy_per_atom: float
    composition: str
    descriptor: np.ndarray


class BasinRegistry:
    def __init__(self, tolerance: float = 0.05, energy_tolerance: float = 1e-3):
        self.tolerance = tolerance
        self.energy_tolerance = energy_tolerance
        self.basins: list[Basin] = []

    def __len__(self) -> int:
        return len(self.basins)

    def describe(self, atoms: Atoms, energy: float) -> Basin:
        """A not-yet-registered Basin (id -1) for `atoms` with model energy `energy`."""
        return Basin(-1, fingerprint(atoms, self.tolerance), energy / max(len(atoms), 1),
                     composition_key(atoms), basin_descriptor(atoms))

    def find(self, candidate: Basin) -> Basin | None:
        for basin in self.basins:
            if basin.fingerprint == candidate.fingerprint:
                return basin
        for basin in self.basins:
            if (basin.composition == candidate.composition
                    and abs(basin.energy_per_atom - candidate.energy_per_atom) <= self.energy_tolerance
                    and basin.descriptor.shape == candidate.descriptor.shape
                    and np.max(np.abs(basin.descriptor - candidate.descriptor), initial=0.0) <= self.tolerance):
                return basin
        return None

    def add(self, candidate: Basin) -> Basin:
        candidate.id = len(self.basins)
        self.basins.append(candidate)
        return candidate


def basin_descriptor(atoms: Atoms) -> np.ndarray:
    return descriptor(atoms, cutoff_per_radius=BASIN_CUTOFF_PER_RADIUS)
