"""Export a FairChem checkpoint as RUN_DIR/artifacts/: checkpoint.pt (what OCPCalculator and
`fairchem --checkpoint` load), fairchem_config.yml (when known) and manifest.json, whose model
description the worker reads from the checkpoint. The source is a generation or run directory or a
checkpoint file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact
from mlip_autopipec.backends import export as shared
from mlip_autopipec.backends.fairchem.interpreter import call_worker

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "fairchem_config.yml"


class SizedFile(shared.ExportedFile):
    bytes: int


class FairChemExportManifest(shared.BaseExportManifest):
    checkpoint: SizedFile
    config_yml: SizedFile | None = None
    model: dict[str, Any]  # name, backbone, parameters, epoch, step of the checkpoint
    elements: list[str] = Field(default_factory=list)
    versions: dict[str, str]


def export_checkpoint(model_in: str | os.PathLike, run_dir: str | os.PathLike, python: Path,
                      backend: str, config: dict | None = None, timeout: float = 600.0,
                      env: dict[str, str] | None = None) -> Path:
    """Write RUN_DIR/artifacts/ from `model_in`; return the manifest's path. The artifacts directory
    is replaced as a whole (built beside it, then renamed)."""
    source = Path(model_in)
    checkpoint, config_yml, artifact = _export_sources(source)
    with shared.staged_export(run_dir) as staging:
        shutil.copyfile(checkpoint, staging / CHECKPOINT_FILE)
        if config_yml is not None:
            shutil.copyfile(config_yml, staging / CONFIG_FILE)
        description = call_worker(python, ["describe", "--checkpoint", str(staging / CHECKPOINT_FILE)],
                                  Path(run_dir) / "fairchem_worker.log", timeout, env)
        versions = {"fairchem-core": description.pop("fairchem_version"), "torch": description.pop("torch_version")}
        FairChemExportManifest(
            backend=artifact.backend if artifact is not None else backend,
            source=str(source.resolve()),
            checkpoint=_entry(staging, CHECKPOINT_FILE),
            config_yml=_entry(staging, CONFIG_FILE) if config_yml is not None else None,
            model=description,
            elements=list(artifact.elements) if artifact is not None else [],
            versions=versions,
            config=dict(config or {}),
            metrics=dict(artifact.metrics) if artifact is not None else {},
            dataset_digest=artifact.dataset_digest if artifact is not None else None,
        ).write(staging)
    return Path(run_dir) / shared.ARTIFACTS_DIR / shared.MANIFEST_NAME


def checkpoint_of(source: str | os.PathLike) -> Path:
    """The checkpoint file behind a generation / run directory, an export manifest, or a .pt file."""
    source = Path(source)
    if source.name == shared.MANIFEST_NAME or (source.is_dir() and (source / shared.MANIFEST_NAME).is_file()
                                        and not (source / ARTIFACT_NAME).is_file()):
        manifest = FairChemExportManifest.load(source)
        manifest.verify()
        return manifest.path(manifest.checkpoint)
    if source.is_dir() and not (source / ARTIFACT_NAME).is_file() and (source / shared.ARTIFACTS_DIR / shared.MANIFEST_NAME).is_file():
        return checkpoint_of(source / shared.ARTIFACTS_DIR / shared.MANIFEST_NAME)
    return _export_sources(source)[0]


def _export_sources(source: Path) -> tuple[Path, Path | None, PotentialArtifact | None]:
    """(checkpoint, config yml or None, artifact or None) of a generation directory or a checkpoint."""
    if source.is_dir() and not (source / ARTIFACT_NAME).is_file() and (source / "train" / ARTIFACT_NAME).is_file():
        source = source / "train"
    if source.is_dir() or source.name == ARTIFACT_NAME:
        if not (source if source.name == ARTIFACT_NAME else source / ARTIFACT_NAME).is_file():
            raise FileNotFoundError(f"{source}: neither a finished FairChem generation (no {ARTIFACT_NAME}) "
                                    "nor a checkpoint file")
        artifact = PotentialArtifact.load(source)
        artifact.verify()
        if "checkpoint" not in artifact.files:
            raise ValueError(f"{source}: a {artifact.backend} generation, not a FairChem one (no checkpoint)")
        config_yml = artifact.path("config_yml") if "config_yml" in artifact.files else None
        return artifact.path("checkpoint"), config_yml, artifact
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such checkpoint file")
    beside = source.parent.parent.parent / CONFIG_FILE  # RUN/checkpoints/ID/checkpoint.pt
    return source, beside if beside.is_file() else None, None


def _entry(directory: Path, name: str) -> SizedFile:
    return shared.exported(directory, name, SizedFile, bytes=(directory / name).stat().st_size)
