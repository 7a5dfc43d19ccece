"""Small structures for the sampling tests (EMT elements only)."""

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.constraints import FixAtoms

from mlip_autopipec.sampling.config import SamplingRules
from mlip_autopipec.sampling.structure import with_fixed


def slab_with_adsorbate() -> Atoms:
    """Cu(111) 3x3x2 (bottom layer fixed, tag 1) with an O2 molecule above it (tag 2): 20 atoms."""
    slab = fcc111("Cu", size=(3, 3, 2), vacuum=6.0)
    add_adsorbate(slab, molecule("O2"), 2.0, "fcc")
    tags = np.where(slab.numbers == 8, 2, 1)
    slab.set_tags(tags)
    fixed = slab.positions[:, 2] < slab.positions[slab.numbers == 29, 2].min() + 0.5
    return with_fixed(slab, fixed)


def cu_bulk(repeat=(2, 2, 2)) -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)


def cuni_bulk() -> Atoms:
    """32-atom Cu24Ni8 cell, first four atoms fixed."""
    atoms = cu_bulk()
    atoms.numbers[::4] = 28
    atoms.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    return atoms


def ethanol() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.center(vacuum=4.0)
    return atoms


def rules(**blocks) -> SamplingRules:
    """Rules with the given action blocks and pipeline overrides (`pipeline={...}`)."""
    return SamplingRules.model_validate(blocks)


def adatom_on_cu111() -> Atoms:
    """Cu(111) 3x3x2 with the bottom layer fixed and one Cu adatom (tag 2) in an fcc hollow: 19 atoms.
    Under EMT the adatom has two kinds of minima, fcc and hcp hollows, 1.47 Å apart."""
    slab = fcc111("Cu", size=(3, 3, 2), vacuum=6.0)
    add_adsorbate(slab, "Cu", 2.0, "fcc")
    slab.set_tags([1] * (len(slab) - 1) + [2])
    return with_fixed(slab, slab.positions[:, 2] < slab.positions[:, 2].min() + 0.5)
