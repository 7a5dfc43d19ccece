"""Prefect block types of the product (registered by deployments/setup_server.py)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.backends.base import ARTIFACT_NAME
from mlip_autopipec.storage import ObjectStoreError

# `<name>-gen-NNN`, as publish_task names blocks: what a potential argument that is no path may be.
BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*-gen-\d{3,}$")


class PotentialGeneration(Block):
    """One trained generation of a campaign's potential: where its files are and how good it is.

    Load it anywhere with `PotentialGeneration.load("<campaign>-gen-003")` (a campaign's) or
    `PotentialGeneration.load("<name>-gen-000")` (a `flows.train` run's, see `--name`). A generation
    published with storage (`flows.train --storage URL`, a campaign's `storage:`) can be fetched on
    any machine that reaches that storage: `.download(dir)` (every file digest-verified) or `.calculator()`.
    """

    _block_type_name = "Potential Generation"
    _block_type_slug = "potential-generation"
    _description = "A trained interatomic potential of one active-learning generation."

    campaign: str
    generation: int
    backend: str
    version: str = Field(description="version of the training tool")
    generation_dir: str
    files: dict[str, str] = Field(description="role -> absolute path on the machine that trained it "
                                              "(potential, active set, logs, ...)")
    potential_digest: str
    dataset_digest: str
    metrics: dict[str, float] = Field(default_factory=dict, description="training and test errors")
    energy_compared_with: str = Field("energy", description="the label energy errors are computed against: "
                                                            "the energy the potential was fitted to")
    # Set when the generation was uploaded (blocks saved before issue 17 load without them).
    storage: str | None = Field(None, description="the storage it was uploaded to: a URL or a remote-file-system "
                                                  "block name (credentials live in the environment or that block)")
    tree_digest: str | None = Field(None, description="sha256 of the manifest of the uploaded generation directory")
    tree_url: str | None = Field(None, description="URL of that manifest")
    objects: dict[str, str] = Field(default_factory=dict,
                                    description="role -> URL of the uploaded file (its last part is its sha256)")

    def download(self, target_dir: str | os.PathLike | None = None) -> Path:
        """The generation directory, verified against `potential_digest`: with storage, downloaded
        into `target_dir` (default: the per-user cache, see `cache_dir`); without, the directory it
        was trained in, copied to `target_dir` if one is given. Raises ObjectStoreError naming the
        object and digest for a missing or corrupted object, FileNotFoundError when the files of a
        generation that was never uploaded are gone."""
        if self.tree_digest is not None:
            from tasks.storage import open_storage

            target = Path(target_dir) if target_dir is not None else cache_dir(self.tree_digest)
            open_storage(self.storage).get_tree(self.tree_digest, target)
            self._check(target, f"tree {self.tree_url}")
            return target
        source = Path(self.generation_dir)
        if not (source / ARTIFACT_NAME).is_file():
            raise FileNotFoundError(f"generation {source} is gone and was never uploaded (published without "
                                    "storage): nothing to download")
        self._check(source, str(source))
        if target_dir is None:
            return source
        target = Path(target_dir)
        if not target.exists():
            partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
            try:
                shutil.copytree(source, partial)
                os.replace(partial, target)
            except OSError:
                if not target.is_dir():  # else another process made the copy first: checked below
                    raise
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        self._check(target, str(source))
        return target

    def calculator(self):
        """An ASE calculator of this potential (downloaded into the per-user cache if needed)."""
        from mlip_autopipec.backends.potentials import load_potential

        return load_potential(self.download())[0]

    def _check(self, directory: Path, where: str) -> None:
        artifact = PotentialArtifact.load(directory / ARTIFACT_NAME)
        if artifact.digest != self.potential_digest:
            raise ObjectStoreError(f"{where} holds potential {artifact.digest}, expected {self.potential_digest}")
        try:
            artifact.verify()
        except (FileNotFoundError, ValueError) as exc:
            raise ObjectStoreError(f"{where}: {exc}") from None


def cache_dir(tree_digest: str) -> Path:
    """Where `.download()` puts a generation by default: `$XDG_CACHE_HOME/mlip-autopipec/generations/<digest>`."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "mlip-autopipec" / "generations" / tree_digest


def resolve_potential(value: str, download_root: str | os.PathLike | None = None) -> str:
    """What every command that takes a potential does with it: an existing path (or anything that
    does not look like a block name, e.g. a calculator name) is returned as given; a block name
    `<name>-gen-NNN` is loaded and its generation downloaded (verified) into `download_root/<name>`
    (default: the per-user cache) and that directory returned. Raises ValueError for a block that does
    not exist, ObjectStoreError for an object that is missing or corrupted."""
    if Path(value).exists() or not BLOCK_NAME.match(value):
        return value
    try:
        block = PotentialGeneration.load(value)
    except ValueError:  # Prefect: "Unable to find block document named ..."
        raise ValueError(f"{value}: neither a file nor a PotentialGeneration block on this Prefect server") from None
    target = Path(download_root) / value if download_root is not None else None
    return str(block.download(target))
