"""Training and evaluation tasks. Inputs are paths plus content digests, so Prefect's cache key
changes exactly when the dataset, the config or the starting potential does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment
from pydantic import BaseModel, ConfigDict

from mlip_autopipec.backends import PotentialArtifact, TrainingError, TrainingTimeout, get_trainer
from mlip_autopipec.campaign.travel import tree_bytes
from mlip_autopipec.config.training import parse_training_config
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.generations import find_matching, prepare_next
from mlip_autopipec.validation.evaluation import evaluate_on_split
from mlip_autopipec.validation.results import Evaluation
from tasks.caching import DIGEST_CACHE
from tasks.progress import PrefectProgress
from tasks.storage import open_storage

TRAINING_SLOT = "gpu"


class TrainedPotential(BaseModel):
    """What flows pass on about a trained generation: where it is and what it holds, not the potential itself."""

    model_config = ConfigDict(frozen=True)

    artifact: str  # the generation's artifact.json
    generation_dir: str
    digest: str
    backend: str
    metrics: dict[str, float]  # the training tool's own
    version: str

    @classmethod
    def of(cls, artifact: PotentialArtifact) -> TrainedPotential:
        return cls(artifact=str(Path(artifact.generation_dir) / "artifact.json"),
                   generation_dir=str(artifact.generation_dir), digest=artifact.digest, backend=artifact.backend,
                   metrics=dict(artifact.metrics), version=artifact.version)

    def output_files(self) -> list[str]:
        """The files a (possibly cached) train_task result points to."""
        return [self.artifact]


class StoredGeneration(BaseModel):
    """A generation trained on a worker that shares no disk with the campaign: the tree in object
    storage that `name` points at (the worker's own copy is gone with its scratch directory)."""

    model_config = ConfigDict(frozen=True)

    name: str
    tree: str
    potential_digest: str
    bytes: int


@task(name="fetch tree", task_run_name="fetch tree {tree:.12}", retries=2, retry_delay_seconds=5,
      cache_policy=NO_CACHE)
def fetch_tree_task(storage: str, tree: str, target: str) -> str:
    """Download tree `tree` from `storage` into `target`, every file verified against its digest."""
    objects = open_storage(storage)
    started = time.perf_counter()
    path = objects.get_tree(tree, target)
    get_run_logger().info(f"fetched tree {tree[:12]} ({tree_bytes(objects, tree)} bytes) into {target} "
                          f"in {time.perf_counter() - started:.1f} s")
    return str(path)


@task(name="store tree", task_run_name="store {name}", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def store_tree_task(storage: str, generation_dir: str, name: str) -> StoredGeneration:
    """Upload a trained generation directory as a tree, then point `name` at it (never at a partial upload)."""
    objects = open_storage(storage)
    started = time.perf_counter()
    tree = objects.put_tree(generation_dir).digest
    objects.set_name(name, tree)
    stored = StoredGeneration(name=name, tree=tree, potential_digest=PotentialArtifact.load(generation_dir).digest,
                              bytes=tree_bytes(objects, tree))
    get_run_logger().info(f"stored {generation_dir} as tree {tree[:12]} ({stored.bytes} bytes), named {name}, "
                          f"in {time.perf_counter() - started:.1f} s")
    return stored


@contextlib.contextmanager
def training_slot() -> Iterator[None]:
    """Hold one slot of the server's `gpu` limit (deployments/setup_server.py) while training, so
    trainings on one accelerator take turns. Strict in any deployment's run (train/gpu, and a
    deployed campaign that trains in-process, whose subflows inherit the deployment): a server that
    was never set up fails the run instead of letting trainings share the GPU unguarded. Outside
    deployments (a laptop's temporary server has no such limit) it does not wait."""
    strict = deployment.id is not None
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(TRAINING_SLOT)
            exists = True
        except ObjectNotFound:
            exists = False
    if not exists and strict:
        raise RuntimeError(f"training in a deployment needs the server's {TRAINING_SLOT!r} concurrency "
                           "limit: run `python -m deployments.setup_server` against this server")
    if not exists:  # a laptop's server has no such limit: nothing to take turns on, and nothing to warn about
        yield
        return
    with concurrency(TRAINING_SLOT, occupy=1, strict=strict):
        yield


def _retry_crashes_only(task, task_run, state) -> bool:
    """A training killed by a signal is worth one more try; a timeout, bad input or settings, or a
    tool that exited with an error of its own (it would fail the same way again) is not."""
    try:
        state.result()
    except TrainingTimeout:
        return False
    except TrainingError as exc:
        return exc.retryable
    except Exception:
        return False
    return False


@task(name="train", retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_crashes_only,
      cache_policy=DIGEST_CACHE, persist_result=True)
def train_task(manifest_path: str, manifest_digest: str, training_config: dict, generations_root: str,
               initial_artifact: str | None = None, initial_digest: str | None = None,
               generation: int | None = None) -> TrainedPotential:
    """Train one generation (or reuse the finished one with the same digests); `generation`
    fixes its directory index (default: one past the last finished generation)."""
    logger = get_run_logger()
    manifest = DatasetManifest.load(manifest_path)
    if manifest.digest != manifest_digest:
        raise ValueError(f"{manifest_path} changed since export (digest {manifest.digest[:12]}, "
                         f"expected {manifest_digest[:12]})")
    config = parse_training_config(training_config)
    initial = PotentialArtifact.load(initial_artifact) if initial_artifact else None
    if initial is not None:
        initial.verify()
    existing = find_matching(generations_root, manifest.digest, config.digest(),
                             initial.digest if initial else None)
    if existing is not None:
        logger.info(f"reusing {existing.generation_dir}: same dataset, config and starting potential")
        return TrainedPotential.of(existing)
    target = prepare_next(generations_root, generation)
    logger.info(f"training {config.backend} on {manifest.counts['train']} structures into {target}")
    progress = PrefectProgress(key="training-progress", description=f"{config.backend} training of {target.name}")
    with training_slot():
        artifact = get_trainer(config.backend).train(manifest, config, target, initial, progress=progress)
    return TrainedPotential.of(artifact)


@task(name="evaluate", cache_policy=DIGEST_CACHE, persist_result=True)
def evaluate_task(artifact_path: str, potential_digest: str, manifest_path: str, manifest_digest: str,
                  split: str | None = None, name: str = "test") -> Evaluation:
    """Errors of the potential on one split of a dataset (default: its test split, else its train
    split), with plots; `name` labels the evaluation (e.g. "held-out") in the report. Energies are
    compared with the energy the potential was fitted to (`energy_compared_with`); this docstring is
    part of the cache key, so evaluations cached before that rule are not reused."""
    return Evaluation.model_validate(evaluate_on_split(PotentialArtifact.load(artifact_path),
                                                      DatasetManifest.load(manifest_path), split, name))

