"""Export a Pacemaker generation as standard artifacts: RUN_DIR/artifacts/ with

    potential.yaml   the B-basis potential (what PyACECalculator and γ need)
    potential.yace   the C-tilde potential (LAMMPS pair_style pace)
    potential.asi    the active set (extrapolation grade γ)
    artifact.json    the generation's artifact restricted to these files, so the export is itself a
                     loadable generation (digests checked)
    manifest.json    backend, source, files with sha256, elements, config, metrics, versions

`calculator_from_manifest(manifest.json)` loads it back into a working γ-aware ASE calculator.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator
from pydantic import BaseModel, ConfigDict, Field

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact
from mlip_autopipec.files import atomic_write_text, sha256_file

ARTIFACTS_DIR = "artifacts"
MANIFEST_NAME = "manifest.json"
EXPORTED_ROLES = ("potential_yaml", "potential_yace", "active_set")


class ExportedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the manifest's directory
    sha256: str


class PacemakerExportManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    backend: str = "pacemaker"
    created: str
    source: str
    files: dict[str, ExportedFile]  # artifact role -> file
    elements: list[str]
    version: str
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    dataset_digest: str | None = None


def export_generation(generation: str | os.PathLike, run_dir: str | os.PathLike,
                      config: dict | None = None) -> Path:
    """Write RUN_DIR/artifacts/ from a generation directory (or its artifact.json); return the
    manifest's path. The artifacts directory is replaced as a whole, never left half-written."""
    artifact = PotentialArtifact.load(generation)
    artifact.verify()
    roles = [role for role in EXPORTED_ROLES if role in artifact.files]
    target = Path(run_dir) / ARTIFACTS_DIR
    staging = target.with_name(f".{ARTIFACTS_DIR}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for role in roles:
            shutil.copyfile(artifact.path(role), staging / artifact.files[role])
        exported = artifact.model_copy(update={
            "files": {role: artifact.files[role] for role in roles},
            "digests": {role: artifact.digests[role] for role in roles}})
        exported.save(staging)
        manifest = PacemakerExportManifest(
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            source=str(artifact.generation_dir.resolve()),
            files={role: ExportedFile(path=artifact.files[role], sha256=sha256_file(staging / artifact.files[role]))
                   for role in roles},
            elements=artifact.elements, version=artifact.version, config=dict(config or {}),
            metrics=dict(artifact.metrics), dataset_digest=artifact.dataset_digest)
        atomic_write_text(staging / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / MANIFEST_NAME


def calculator_from_manifest(manifest_path: str | os.PathLike, with_active_set: bool = True) -> Calculator:
    """The exported potential as an ASE calculator; raises if a file is missing or changed."""
    from mlip_autopipec.backends.pacemaker.calculator import make_calculator

    path = Path(manifest_path)
    directory = path if path.is_dir() else path.parent
    if not (directory / ARTIFACT_NAME).is_file():
        raise FileNotFoundError(f"{directory}: no {ARTIFACT_NAME} beside the manifest; not a Pacemaker export")
    artifact = PotentialArtifact.load(directory)
    artifact.verify()
    return make_calculator(artifact, with_active_set=with_active_set and "active_set" in artifact.files)
