"""Export a Pacemaker generation as RUN_DIR/artifacts/: potential.yaml (B-basis, for γ), potential.yace
(LAMMPS pair_style pace), potential.asi (active set), artifact.json (restricted to these files, so the
export is itself a loadable generation) and manifest.json.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact
from mlip_autopipec.backends import export as shared

EXPORTED_ROLES = ("potential_yaml", "potential_yace", "active_set")


class PacemakerExportManifest(shared.BaseExportManifest):
    backend: str = "pacemaker"
    files: dict[str, shared.ExportedFile]  # artifact role -> file
    elements: list[str]
    version: str


def export_generation(generation: str | os.PathLike, run_dir: str | os.PathLike,
                      config: dict | None = None) -> Path:
    """Write RUN_DIR/artifacts/ from a generation directory (or its artifact.json); return the
    manifest's path. The artifacts directory is replaced as a whole, never left half-written."""
    artifact = PotentialArtifact.load(generation)
    artifact.verify()
    roles = [role for role in EXPORTED_ROLES if role in artifact.files]
    with shared.staged_export(run_dir) as staging:
        for role in roles:
            shutil.copyfile(artifact.path(role), staging / artifact.files[role])
        exported_artifact = artifact.model_copy(update={
            "files": {role: artifact.files[role] for role in roles},
            "digests": {role: artifact.digests[role] for role in roles}})
        exported_artifact.save(staging)
        PacemakerExportManifest(
            source=str(artifact.generation_dir.resolve()),
            files={role: shared.exported(staging, artifact.files[role]) for role in roles},
            elements=artifact.elements, version=artifact.version, config=dict(config or {}),
            metrics=dict(artifact.metrics), dataset_digest=artifact.dataset_digest).write(staging)
    return Path(run_dir) / shared.ARTIFACTS_DIR / shared.MANIFEST_NAME


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
