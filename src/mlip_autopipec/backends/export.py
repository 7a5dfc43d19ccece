"""What every backend's export shares: RUN_DIR/artifacts/ holds the model files and manifest.json
(files with their sha256, source, config, metrics, versions); it is built beside the old one and
renamed into place, so it is replaced as a whole and never left half-written."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlip_autopipec.files import atomic_write_text, sha256_file

ARTIFACTS_DIR = "artifacts"
MANIFEST_NAME = "manifest.json"


class ExportedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the manifest's directory
    sha256: str


class BaseExportManifest(BaseModel):
    """A backend's manifest.json: its own file fields (ExportedFile, or lists / dicts of them) plus these."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    backend: str
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    source: str
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    dataset_digest: str | None = None

    directory: Path | None = Field(None, exclude=True)  # where manifest.json was loaded from

    def path(self, entry: ExportedFile) -> Path:
        return (self.directory or Path(".")) / entry.path

    def exported_files(self) -> list[ExportedFile]:
        found = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            found += [item for item in values if isinstance(item, ExportedFile)]
        return found

    def verify(self) -> None:
        """Raise if a listed file is missing or changed since export."""
        for entry in self.exported_files():
            path = self.path(entry)
            if not path.is_file():
                raise FileNotFoundError(f"{path} listed in the export manifest is missing")
            if sha256_file(path) != entry.sha256:
                raise ValueError(f"{path} changed after export (sha256 differs from the manifest)")

    def write(self, directory: Path) -> Path:
        return atomic_write_text(directory / MANIFEST_NAME, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike):
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            manifest = cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no export manifest") from None
        manifest.directory = path.parent
        return manifest


def exported(directory: Path, name: str, entry_class: type[ExportedFile] = ExportedFile, **fields) -> ExportedFile:
    return entry_class(path=name, sha256=sha256_file(directory / name), **fields)


@contextlib.contextmanager
def staged_export(run_dir: str | os.PathLike) -> Iterator[Path]:
    """A staging directory to fill; on success it becomes RUN_DIR/artifacts/ (the old one replaced)."""
    target = Path(run_dir) / ARTIFACTS_DIR
    staging = target.with_name(f".{ARTIFACTS_DIR}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
