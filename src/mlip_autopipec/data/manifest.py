"""The dataset manifest: what an export wrote, with a content digest of every file.

Later steps (training, validation) take a manifest path and cache on `digest`, so an unchanged
dataset is never trained on twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mlip_autopipec.files import atomic_write_text, sha256_text

MANIFEST_NAME = "manifest.json"
ExportFormat = Literal["extxyz", "pacemaker", "mace"]
Split = Literal["train", "test"]

# File name of each (format, split); the same in every export directory.
FILE_NAMES: dict[ExportFormat, str] = {
    "extxyz": "{split}.extxyz",
    "pacemaker": "{split}.pckl.gzip",
    "mace": "{split}_mace.extxyz",
}


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the manifest's directory
    format: ExportFormat
    split: Split
    frames: int
    atoms: int
    sha256: str


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    seed: int
    test_fraction: float
    elements: list[str]
    counts: dict[Split, int]
    files: list[ManifestFile]
    source: dict[str, str | int | None]
    digest: str = ""  # over files' digests and split parameters; set by `finalize`

    directory: Path | None = None  # where the manifest was loaded from; not serialised

    def finalize(self) -> DatasetManifest:
        payload = self.model_dump(exclude={"digest", "directory", "source"}, mode="json")
        self.digest = sha256_text(json.dumps(payload, sort_keys=True))
        return self

    def path_of(self, format: ExportFormat, split: Split) -> Path:
        for entry in self.files:
            if entry.format == format and entry.split == split:
                base = self.directory or Path(".")
                return base / entry.path
        raise KeyError(f"manifest has no {format} file for the {split} split "
                       f"(formats exported: {sorted({f.format for f in self.files})})")

    def write(self, directory: str | Path) -> Path:
        target = Path(directory) / MANIFEST_NAME
        text = self.model_dump_json(indent=2, exclude={"directory"})
        atomic_write_text(target, text + "\n")
        self.directory = Path(directory)
        return target

    @classmethod
    def load(cls, path: str | Path) -> DatasetManifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        manifest = cls.model_validate_json(path.read_text())
        manifest.directory = path.parent
        return manifest
