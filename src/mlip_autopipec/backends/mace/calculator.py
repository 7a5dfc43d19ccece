"""ASE calculators for trained MACE models: one model, or a committee (several `.model` files) that
predicts the mean and reports how much its members disagree, DP-GEN style:

    forces_std           per atom: sqrt(mean over models |F_i^m - <F_i>|^2)   (eV/Angstrom)
    max_force_std        max over atoms of forces_std: DP-GEN's max_devi_f, compared with the trust levels
    energy_std           standard deviation of the total energy over models (eV); energy_std_per_atom
plus MACE's own `energy_var`, `forces_var`, `energy_comm`, `forces_comm`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from mlip_autopipec.backends.base import BackendNotFound, PotentialArtifact
from mlip_autopipec.backends.potentials import BaselinePlusModel
from mlip_autopipec.backends.runner import resolve_device

COMMITTEE_PROPERTIES = ["forces_std", "max_force_std", "energy_std", "energy_std_per_atom"]


def load_models(model_paths: Sequence[str | os.PathLike], device: str = "cpu") -> list:
    """torch.load each MACE `.model` (a whole pickled module) onto `device`, ready for inference.

    A `.model` file is code: MACE saves the whole module (e3nn's generated code included), which
    torch can only load with weights_only=False, so loading one runs whatever it contains. Load
    only model files you trust (your own runs, published models); weights files and checkpoints
    (.pt, `weights=` of the export) are read with weights_only=True.
    """
    torch = _import_torch_and_mace()
    models = []
    for path in model_paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MACE model {path} does not exist")
        try:
            model = torch.load(path, map_location=device, weights_only=False)
        except Exception as exc:
            raise ValueError(f"{path}: not a MACE model file torch can load ({type(exc).__name__}: {exc})") from exc
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "r_max"):
            raise ValueError(f"{path}: holds a {type(model).__name__}, not a MACE model; a training "
                             "checkpoint (.pt) holds only weights, use the .model file")
        models.append(model.to(device))
    return models


def make_mace_calculator(model_paths: Sequence[str | os.PathLike], device: str = "auto") -> Calculator:
    """MACECalculator for one model; a CommitteeMACECalculator for several."""
    if not model_paths:
        raise ValueError("no MACE model files given")
    device = resolve_device(device)
    return calculator_of(load_models(model_paths, device), device)


def calculator_of(models: list, device: str) -> Calculator:
    """MACECalculator over loaded `models` (already on `device`); a CommitteeMACECalculator for several."""
    dtype = _model_dtype(models[0])
    if len(models) > 1:
        return CommitteeMACECalculator(models=models, device=device, default_dtype=dtype)
    from mace.calculators import MACECalculator

    return MACECalculator(models=models, device=device, default_dtype=dtype)


def make_calculator(artifact: PotentialArtifact, with_uncertainty: bool = True, device: str = "auto") -> Calculator:
    """The generation's model (mean of its committee when it has one), baseline added if delta-learned.

    `with_uncertainty=False` uses the first model only: a committee costs one model evaluation per member.
    """
    paths = model_paths_of(artifact)
    if not with_uncertainty:
        paths = paths[:1]
    mace = make_mace_calculator(paths, device=device)
    if artifact.baseline is not None:
        return BaselinePlusMACECalculator(artifact.baseline.build(), mace)
    return mace


def model_paths_of(artifact: PotentialArtifact) -> list[Path]:
    """The artifact's model files: `model` first, then `committee_model_1`, `committee_model_2`, ..."""
    roles = ["model"] + sorted((role for role in artifact.files if role.startswith("committee_model_")),
                               key=lambda role: int(role.rsplit("_", 1)[1]))
    return [artifact.path(role) for role in roles]


def _import_torch_and_mace():
    try:
        import torch

        import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; its modules must be importable to unpickle)
    except ImportError as exc:
        raise BackendNotFound(f"mace-torch is needed to evaluate MACE models: {exc}") from exc
    return torch


def _model_dtype(model) -> str:
    import torch

    dtype = next(model.parameters()).dtype
    return "float64" if dtype == torch.float64 else "float32"


@functools.cache
def _committee_class():
    """CommitteeMACECalculator, defined on first use: importing this module must not load torch."""
    _import_torch_and_mace()
    from mace.calculators import MACECalculator

    class CommitteeMACECalculator(MACECalculator):
        """MACECalculator over several models, adding DP-GEN-style deviations (see the module doc)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.num_models < 2:
                raise ValueError("a committee needs at least two models")
            self.implemented_properties = list(self.implemented_properties) + COMMITTEE_PROPERTIES

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results.update(committee_deviations(self.results["forces_comm"],
                                                     self.results["energy_comm"], len(self.atoms)))

    return CommitteeMACECalculator


def CommitteeMACECalculator(*args, **kwargs) -> Calculator:  # noqa: N802  (reads as the class it builds)
    return _committee_class()(*args, **kwargs)


def committee_deviations(forces_comm: np.ndarray, energy_comm: np.ndarray, n_atoms: int) -> dict:
    """forces_comm (models, atoms, 3) and energy_comm (models,) -> the committee's deviations."""
    forces_comm = np.asarray(forces_comm, dtype=float)
    deviation = forces_comm - forces_comm.mean(axis=0)
    forces_std = np.sqrt(np.mean(np.sum(deviation**2, axis=2), axis=0))
    energy_std = float(np.std(np.asarray(energy_comm, dtype=float)))
    return {
        "forces_std": forces_std,
        "max_force_std": float(forces_std.max()) if forces_std.size else 0.0,
        "energy_std": energy_std,
        "energy_std_per_atom": energy_std / max(n_atoms, 1),
    }


class BaselinePlusMACECalculator(BaselinePlusModel):
    """Baseline + the MACE model fitted to the remainder; committee deviations are the MACE part's."""

    uncertainty_keys = tuple(COMMITTEE_PROPERTIES)
