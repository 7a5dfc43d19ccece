"""Generation directories of a potential's history: `ROOT/gen-000`, `ROOT/gen-001`, ...

Training the same dataset with the same config from the same starting potential is done once:
a finished generation with matching digests is reused rather than retrained, whatever
happened to the orchestrator's cache. A directory left by a crashed attempt (no artifact.json)
is trained into again; the backend keeps the crashed attempt's files in it for inspection.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact

_GENERATION = re.compile(r"^gen-(\d{3,})$")


def generation_dir(root: str | Path, index: int) -> Path:
    return Path(root) / f"gen-{index:03d}"


def generation_index(path: str | Path) -> int:
    match = _GENERATION.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a generation directory (expected a name like gen-003)")
    return int(match.group(1))


def finished_generations(root: str | Path) -> list[PotentialArtifact]:
    """Finished generations under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted((generation_index(p), p) for p in root.iterdir()
                   if _GENERATION.match(p.name) and (p / ARTIFACT_NAME).is_file())
    return [PotentialArtifact.load(path) for _, path in found]


def find_matching(root: str | Path, dataset_digest: str, config_digest: str,
                  initial_digest: str | None) -> PotentialArtifact | None:
    for artifact in reversed(finished_generations(root)):
        if (artifact.dataset_digest, artifact.config_digest, artifact.initial_potential) == (
                dataset_digest, config_digest, initial_digest):
            return artifact
    return None


def prepare_next(root: str | Path, index: int | None = None) -> Path:
    """The directory for a new generation: `index`, or one past the last finished one."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if index is None:
        finished = finished_generations(root)
        index = generation_index(finished[-1].generation_dir) + 1 if finished else 0
    target = generation_dir(root, index)
    if (target / ARTIFACT_NAME).is_file():
        raise FileExistsError(f"{target} already holds a finished generation; generations are never overwritten")
    return target
