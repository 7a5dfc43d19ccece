"""The model that drives sampling: a generation's potential, a potential file, or a named ASE
calculator (EMT, the embedded default)."""

from __future__ import annotations

from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.calculators import KNOWN_CALCULATORS, CalculatorSpec


def sampling_calculator(model: str | None = None, device: str = "auto") -> tuple[Calculator, str]:
    """(calculator, title). `model` is None (EMT), a short calculator name (emt, lj, ...), a
    generation directory, its artifact.json, a Pacemaker .yaml/.yace (γ from the .asi beside it)
    or a MACE .model (evaluated on `device`)."""
    if model is None or model.lower() in KNOWN_CALCULATORS:
        spec = CalculatorSpec(factory=model or "emt")
        return spec.build(), spec.name
    path = Path(model)
    if path.suffix == ".model" and path.is_file():
        from mlip_autopipec.backends.mace.calculator import make_mace_calculator

        return make_mace_calculator([path], device=device), path.name
    from mlip_autopipec.validation.report import load_potential

    return load_potential(path)
