"""What every training backend shares besides the template (template.py): the training config's
common fields, the artifact a training leaves on disk (artifact.json, written last: its presence
means the generation finished), progress reports and the errors it raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.frames import EnergyReference
from mlip_autopipec.files import atomic_write_text, sha256_file, sha256_text

ARTIFACT_NAME = "artifact.json"


class BaseTrainingConfig(BaseModel):
    """Settings every backend's training config shares (backend name, seed, timeout, optional
    delta-learning baseline); each backend's own config lives next to it (backends/*/config.py)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    seed: int = 42
    timeout_seconds: float = Field(3600.0, gt=0, description="wall-clock limit of the whole training step")
    baseline: CalculatorSpec | None = Field(
        None, description="delta learning: fit labels minus this calculator's energy and forces")

    # Fields that change how a run is watched, not the potential it produces: left out of `digest`.
    RUNTIME_ONLY: ClassVar[frozenset[str]] = frozenset({"timeout_seconds"})

    def digest(self) -> str:
        payload = self.model_dump(mode="json", exclude=set(self.RUNTIME_ONLY))
        return sha256_text(json.dumps(payload, sort_keys=True))


class BackendError(Exception):
    """Base class of every error a training backend raises on purpose."""


class BackendNotFound(BackendError):
    """The backend's executable or Python package is not installed where we looked."""


class DatasetError(BackendError, ValueError):
    """The dataset cannot be trained on as given (empty, wrong elements, missing file)."""


class GenerationExistsError(BackendError, FileExistsError):
    """The generation directory already holds a finished artifact; generations are never overwritten."""


class TrainingError(BackendError):
    """The training tool failed; `log_tail` holds the decisive lines of its log (its last Python
    traceback, then its last lines) and `log_path` the full log. `retryable`: another attempt may
    succeed (the tool was killed by a signal), rather than fail the same way again."""

    def __init__(self, message: str, log_tail: str = "", log_path: Path | None = None, retryable: bool = False):
        self.message = message
        self.log_tail = log_tail
        self.log_path = log_path
        self.retryable = retryable
        details = f"\n--- from {log_path or 'the log'} ---\n{log_tail}" if log_tail else ""
        super().__init__(message + details)

    def __reduce__(self):
        # Orchestrators pickle exceptions across processes; keep the log tail and path through it.
        return (self.__class__, (self.message, self.log_tail, self.log_path, self.retryable))


class TrainingConfigError(BackendError, ValueError):
    """The training settings cannot work for this dataset; found before anything ran."""


class TrainingTimeout(TrainingError):
    """The training ran past its time limit and was killed."""


@dataclass(frozen=True)
class TrainingProgress:
    iteration: int
    max_iterations: int
    loss: float | None
    fraction: float  # 0..1 of the whole training, for progress bars
    message: str


ProgressCallback = Callable[[TrainingProgress], None]


def report(progress: ProgressCallback | None, iteration: int, max_iterations: int, fraction: float, message: str,
           loss: float | None = None) -> None:
    """One TrainingProgress to `progress`, if any: `fraction` clamped to 0..1, a NaN loss as None."""
    if progress is not None:
        progress(TrainingProgress(iteration, max_iterations, None if loss is None or math.isnan(loss) else loss,
                                  min(max(fraction, 0.0), 1.0), message))


class PotentialArtifact(BaseModel):
    """A trained potential: its files (paths relative to the generation directory) and provenance."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    backend: str
    elements: list[str]
    files: dict[str, str]  # role (potential_yaml, potential_yace, active_set, log, ...) -> relative path
    digests: dict[str, str]  # role -> sha256 of that file
    metrics: dict[str, float] = Field(default_factory=dict)
    version: str  # of the training tool, as it reported itself
    dataset_digest: str
    config_digest: str
    initial_potential: str | None = None  # `digest` of the artifact training started from
    baseline: CalculatorSpec | None = None  # delta learning: predictions are baseline + this potential
    # Element -> why its atoms have no real uncertainty yet (Pacemaker: fewer training environments
    # than B-functions, so no MaxVol active set); selection treats those atoms as uncertain.
    species_without_gamma: dict[str, str] = Field(default_factory=dict)
    # The energy its predictions compare with (see data.frames.EnergyReference): Pacemaker fits
    # energy_corrected (with the reference energies of the fit, if it was given any), others energy.
    energy_label: Literal["energy", "energy_corrected"] = "energy"
    reference_energies: dict[str, float] | None = None

    generation_dir: Path | None = None  # where artifact.json lives; not serialised

    @model_validator(mode="before")
    @classmethod
    def _pacemaker_fits_energy_corrected(cls, data):
        # artifacts written before energy_label existed: Pacemaker always fitted energy_corrected
        if isinstance(data, dict) and data.get("backend") == "pacemaker" and "energy_label" not in data:
            data = {**data, "energy_label": "energy_corrected"}
        return data

    @property
    def energy_reference(self) -> EnergyReference:
        return EnergyReference(self.energy_label, self.reference_energies)

    @property
    def digest(self) -> str:
        """Identifies the potential by the content of its files."""
        return sha256_text(json.dumps(self.digests, sort_keys=True))

    def path(self, role: str) -> Path:
        if role not in self.files:
            raise KeyError(f"{self.backend} artifact has no {role!r} file (has {sorted(self.files)})")
        return (self.generation_dir or Path(".")) / self.files[role]

    def verify(self) -> None:
        """Raise if a file is missing or changed since training."""
        for role, expected in self.digests.items():
            path = self.path(role)
            if not path.is_file():
                raise FileNotFoundError(f"{role} file {path} of this generation is missing")
            if sha256_file(path) != expected:
                raise ValueError(f"{role} file {path} changed after training (digest mismatch)")

    def save(self, generation_dir: str | Path | None = None) -> Path:
        directory = Path(generation_dir or self.generation_dir or ".")
        target = atomic_write_text(directory / ARTIFACT_NAME,
                                   self.model_dump_json(indent=2, exclude={"generation_dir"}) + "\n")
        self.generation_dir = directory
        return target

    @classmethod
    def load(cls, path: str | Path) -> PotentialArtifact:
        path = Path(path)
        if path.is_dir():
            path = path / ARTIFACT_NAME
        artifact = cls.model_validate_json(path.read_text())
        artifact.generation_dir = path.parent
        return artifact
