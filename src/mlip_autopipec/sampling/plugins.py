"""Action plugins: post-processing applied, in order, to every action's structure."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlip_autopipec.sampling.config import NoisePlugin
from mlip_autopipec.sampling.structure import fixed_mask


def add_noise(atoms: Atoms, settings: NoisePlugin, rng: np.random.Generator) -> Atoms:
    """Gaussian noise of `sigma` Å on each coordinate, clipped to ±clip; fixed atoms stay unless
    movable_only is false."""
    selected = ~fixed_mask(atoms) if settings.movable_only else np.ones(len(atoms), dtype=bool)
    noise = rng.normal(scale=settings.sigma, size=(int(selected.sum()), 3))
    if settings.clip is not None:
        noise = np.clip(noise, -settings.clip, settings.clip)
    out = atoms.copy()
    out.positions[selected] += noise  # the raw array: set_positions would let FixAtoms drop the noise
    return out


PLUGINS = {"noise": add_noise}


def apply_plugins(atoms: Atoms, plugins: list, rng: np.random.Generator) -> Atoms:
    for plugin in plugins:
        atoms = PLUGINS[plugin.name](atoms, plugin, rng)
    return atoms
