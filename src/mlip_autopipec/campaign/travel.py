"""What a campaign's workers exchange through object storage when they share no disk (`storage:`):
the campaign file, each generation's exported dataset and each trained generation, all by digest.

Names follow the layout every piece of issue 17 uses: `<slug>/datasets/gen-NNN` points at the tree of
the dataset a generation was trained on, `<slug>/generations/gen-NNN` at the tree of the generation's
directory. A worker downloads into a scratch directory of its own (`scratch_directory`), removed
when it is done, so it leaves nothing behind and reads nothing of another machine's disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact
from mlip_autopipec.generations import generation_index
from mlip_autopipec.storage import ObjectStore

SCRATCH_VARIABLE = "MLIP_AUTOPIPEC_SCRATCH"


@contextlib.contextmanager
def scratch_directory(prefix: str, keep_on_failure: bool = False) -> Iterator[Path]:
    """A fresh directory under $MLIP_AUTOPIPEC_SCRATCH (else the system's temporary directory),
    removed with everything in it when the block ends; with `keep_on_failure`, a block that raises
    leaves it in place (a crashed training's logs are for inspection) and says where."""
    parent = os.environ.get(SCRATCH_VARIABLE) or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield directory
    except BaseException as exc:
        if keep_on_failure:
            exc.add_note(f"the attempt's files are kept in {directory}")
            raise
        shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)


def dataset_name(slug: str, generation: int) -> str:
    return f"{slug}/datasets/gen-{generation:03d}"


def generation_name(slug: str, generation: int) -> str:
    return f"{slug}/generations/gen-{generation:03d}"


def tree_artifact(objects: ObjectStore, tree: str) -> PotentialArtifact | None:
    """The artifact.json of generation tree `tree`, read without downloading the rest; None if it has none."""
    entry = objects.tree_files(tree).get(ARTIFACT_NAME)
    if entry is None:
        return None
    return PotentialArtifact.model_validate_json(objects.get_bytes(entry["digest"]))


def matching_generation(objects: ObjectStore, name: str, dataset_digest: str, config_digest: str,
                        initial_digest: str | None) -> str | None:
    """The tree `name` points at if it holds a generation trained on this dataset with this config from
    this starting potential (what `generations.find_matching` asks of a local directory), else None."""
    tree = objects.name(name)
    artifact = tree_artifact(objects, tree) if tree else None
    if artifact is None or (artifact.dataset_digest, artifact.config_digest, artifact.initial_potential) != (
            dataset_digest, config_digest, initial_digest):
        return None
    return tree


def generation_tree(objects: ObjectStore, slug: str, artifact: PotentialArtifact) -> str:
    """The tree of a generation the campaign holds: the one its name points at when that holds this
    potential (as trained or as published), else its directory, uploaded now (trained before `storage:`)."""
    tree = objects.name(generation_name(slug, generation_index(artifact.generation_dir)))
    held = tree_artifact(objects, tree) if tree else None
    if held is not None and held.digest == artifact.digest:
        return tree
    return objects.put_tree(artifact.generation_dir).digest


def tree_bytes(objects: ObjectStore, tree: str) -> int:
    """The size of every file of tree `tree`: what downloading it moves."""
    return sum(entry["size"] for entry in objects.tree_files(tree).values())
