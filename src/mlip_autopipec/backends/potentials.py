"""A potential on disk -> an ASE calculator: a generation directory or its artifact.json (through
its backend), or a bare potential file (Pacemaker .yaml/.yace, MACE .model); the energy it was
fitted to; and the baseline + model sum every delta-learned potential predicts with."""

from __future__ import annotations

import os
from pathlib import Path

from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from mlip_autopipec.data.frames import EnergyReference


class BaselinePlusModel(SumCalculator):
    """Delta learning: a baseline calculator plus the model fitted to the remainder. Uncertainty
    results (`uncertainty_keys`) are the model's: the baseline has none."""

    uncertainty_keys: tuple[str, ...] = ()

    def __init__(self, baseline: Calculator, model: Calculator):
        super().__init__([baseline, model])
        self.baseline = baseline
        self.model = model

    def calculate(self, atoms, properties, system_changes):
        super().calculate(atoms, properties, system_changes)
        for key in self.uncertainty_keys:
            if key in self.model.results:
                self.results[key] = self.model.results[key]


def load_potential(path: str | os.PathLike) -> tuple[Calculator, str]:
    """An ASE calculator and a title for a generation directory, its `artifact.json`, or a bare
    potential file (Pacemaker `.yaml`/`.yace`, with `<stem>.asi` beside it for γ; MACE `.model`).

    Raises FileNotFoundError naming the missing file."""
    from mlip_autopipec.backends import PotentialArtifact, get_trainer
    from mlip_autopipec.backends.base import ARTIFACT_NAME

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"potential {path} does not exist")
    if path.is_dir() or path.suffix == ".json":
        artifact_file = path / ARTIFACT_NAME if path.is_dir() else path
        if not artifact_file.is_file():
            raise FileNotFoundError(f"{path} holds no {ARTIFACT_NAME}: not a generation directory")
        artifact = PotentialArtifact.load(artifact_file)
        artifact.verify()
        version = artifact.version if artifact.version.startswith(artifact.backend) \
            else f"{artifact.backend} {artifact.version}"
        title = f"{artifact.generation_dir.name} ({version})"
        return get_trainer(artifact.backend).make_calculator(artifact), title
    if path.suffix in (".yaml", ".yace"):
        from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

        try:
            calculator = import_pyace().PyACECalculator(str(path))
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"potential {path} is not a Pacemaker potential ({exc})") from exc
        active_set = path.with_suffix(".asi")
        if path.suffix == ".yaml" and active_set.is_file():
            calculator.set_active_set(str(active_set))
        return calculator, path.name
    if path.suffix == ".model":
        from mlip_autopipec.backends.mace.calculator import make_mace_calculator

        return make_mace_calculator([path], device="auto"), path.name
    raise ValueError(f"potential {path}: expected a generation directory, artifact.json, "
                     ".yaml/.yace (Pacemaker) or .model (MACE)")


def potential_energy_reference(path: str | os.PathLike) -> EnergyReference:
    """The energy the potential at `path` (as `load_potential` takes it) was fitted to: a
    generation's artifact says; a bare Pacemaker file fits energy_corrected (a .yaml records the
    reference energies of the fit), a MACE model energy."""
    from mlip_autopipec.backends import PotentialArtifact

    path = Path(path)
    if path.is_dir() or path.suffix == ".json":
        return PotentialArtifact.load(path).energy_reference
    if path.suffix == ".yaml":
        from mlip_autopipec.backends.pacemaker.trainer import fit_reference_energies

        return EnergyReference("energy_corrected", fit_reference_energies(path))
    if path.suffix == ".yace":  # reference energies live in the .yaml it was converted from
        yaml_file = path.with_suffix(".yaml")
        return potential_energy_reference(yaml_file) if yaml_file.is_file() else EnergyReference("energy_corrected")
    return EnergyReference()
