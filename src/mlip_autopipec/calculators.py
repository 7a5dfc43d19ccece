"""ASE calculators named in configuration: labelers, baselines for delta learning, explorers."""

from __future__ import annotations

import importlib
import json

from ase.calculators.calculator import Calculator
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlip_autopipec.files import sha256_text

# Short names users can write instead of a full import path.
KNOWN_CALCULATORS = {
    "emt": "ase.calculators.emt:EMT",
    "lj": "ase.calculators.lj:LennardJones",
    "morse": "ase.calculators.morse:MorsePotential",
    "gpaw": "gpaw:GPAW",
}


class CalculatorSpec(BaseModel):
    """`factory` is a short name (emt, lj, morse, gpaw) or `module:callable`; `kwargs` go to it."""

    model_config = ConfigDict(extra="forbid")

    factory: str = "emt"
    kwargs: dict = Field(default_factory=dict)

    @field_validator("factory")
    @classmethod
    def _known_or_import_path(cls, value: str) -> str:
        if value.lower() in KNOWN_CALCULATORS or ":" in value:
            return value
        raise ValueError(f"unknown calculator {value!r}: use one of {sorted(KNOWN_CALCULATORS)} "
                         "or 'module:callable'")

    @property
    def import_path(self) -> str:
        return KNOWN_CALCULATORS.get(self.factory.lower(), self.factory)

    @property
    def name(self) -> str:
        return self.import_path.rsplit(":", 1)[1]

    def digest(self) -> str:
        """Identifies the labelling method: the same spec always labels the same way."""
        return sha256_text(json.dumps({"factory": self.import_path, "kwargs": self.kwargs},
                                      sort_keys=True, default=str))[:16]

    def resolve(self):
        """The callable `factory` names, imported (ValueError naming it when it cannot be)."""
        module_name, attribute = self.import_path.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"calculator {self.factory!r}: cannot import {self.import_path} ({exc})") from exc
        if not callable(factory):
            raise ValueError(f"calculator {self.factory!r}: {self.import_path} is not callable")
        return factory

    def build(self) -> Calculator:
        return self.resolve()(**self.kwargs)
