"""The one training template every backend follows (after psiflow's `Model.train()` -> `_train`).

`Backend.train()` checks the config's type, keeps the deadline and progress, claims the generation
directory and writes metrics.json and artifact.json last. A backend supplies `_prepare` (everything
checked before the directory is claimed) and `_fit` (write its data, run its tool through
`TrainingRun.run_tool`, name its artifact files).

A generation directory is written once: a finished one (artifact.json) is refused; leftovers of an
unfinished attempt move to failed-attempts/attempt-N/; a live training holds an flock on
`.training.lock`, so a second one into the same directory fails at once (GenerationBusyError).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import (
    ARTIFACT_NAME,
    BackendError,
    BaseTrainingConfig,
    DatasetError,
    GenerationExistsError,
    PotentialArtifact,
    ProgressCallback,
    TrainingError,
    TrainingTimeout,
    report,
)
from mlip_autopipec.backends.runner import log_tail, resolve_executable, run_logged, tool_failed
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import atomic_write_text, sha256_file

FAILED_ATTEMPTS = "failed-attempts"
LOCK_NAME = ".training.lock"
METRICS_JSON = "metrics.json"


class GenerationBusyError(BackendError, BlockingIOError):
    """Another live training holds the generation directory's lock."""


@contextlib.contextmanager
def claim_generation_dir(generation_dir: Path) -> Iterator[Path | None]:
    """Lock `generation_dir` for one training; yields where an unfinished attempt's files were moved
    (None when there were none). A finished generation is refused."""
    _refuse_finished(generation_dir)
    generation_dir.mkdir(parents=True, exist_ok=True)
    with open(generation_dir / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenerationBusyError(f"{generation_dir}: another training is writing into this generation "
                                      f"directory (it holds {LOCK_NAME}); wait for it or train into a new "
                                      "directory") from None
        try:
            _refuse_finished(generation_dir)  # the other one may have finished while we waited for the lock
            yield _move_leftovers(generation_dir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _refuse_finished(generation_dir: Path) -> None:
    if (generation_dir / ARTIFACT_NAME).exists():
        raise GenerationExistsError(f"{generation_dir} already holds a finished generation ({ARTIFACT_NAME}); "
                                    "generations are never overwritten: train into a new directory")


def _move_leftovers(generation_dir: Path) -> Path | None:
    leftovers = [path for path in generation_dir.iterdir() if path.name not in (FAILED_ATTEMPTS, LOCK_NAME)]
    if not leftovers:
        return None
    attempts = generation_dir / FAILED_ATTEMPTS
    prefix = "attempt-"
    numbers = [int(path.name[len(prefix):]) for path in attempts.glob(prefix + "*")
               if path.name[len(prefix):].isdigit()]
    target = attempts / f"{prefix}{max(numbers, default=0) + 1}"
    target.mkdir(parents=True)
    for path in leftovers:
        path.rename(target / path.name)
    return target


def dataset_files(manifest: DatasetManifest, formats: Sequence[str], min_train: int = 1,
                  why: str = "") -> dict[str, Path]:
    """Absolute paths of the manifest's train (and test, if any) files in the first of `formats` each
    split has, checked against their digests. `min_train` structures are needed (`why`, if more than 1)."""
    where = manifest.directory or "the manifest"
    entries: dict[str, Any] = {}
    for wanted in formats:
        for entry in manifest.files:
            if entry.format == wanted:
                entries.setdefault(entry.split, entry)
    if "train" not in entries:
        raise DatasetError(f"{where}: no {formats[0]}-format train file; the dataset is empty or was exported "
                           f"without the '{formats[0]}' format")
    files = {}
    for split, entry in entries.items():
        path = manifest.path_of(entry.format, split).resolve()
        if entry.frames == 0:
            if split == "train":
                raise DatasetError(f"{path}: the training set is empty")
            continue
        if split == "train" and entry.frames < min_train:
            raise DatasetError(f"{path}: {entry.frames} training structure; {why}")
        if not path.is_file():
            raise DatasetError(f"{path}: {split} file listed in the manifest does not exist")
        if sha256_file(path) != entry.sha256:
            raise DatasetError(f"{path}: {split} file changed since export (sha256 differs from the manifest)")
        files[split] = path
    return files


def validation_file(path: str | Path | None) -> Path | None:
    """A separate validation file, resolved; it must exist."""
    if path is None:
        return None
    path = Path(path).resolve()
    if not path.is_file():
        raise DatasetError(f"{path}: validation file does not exist")
    return path


def dataset_elements(manifest: DatasetManifest) -> set[str]:
    elements = set(manifest.elements)
    if not elements:
        raise DatasetError("the dataset manifest lists no elements: the dataset is empty")
    return elements


class TrainingRun:
    """One call of `Backend.train`: its inputs, deadline, progress and the shared steps."""

    def __init__(self, backend: Backend, manifest: DatasetManifest, config: BaseTrainingConfig, generation_dir: Path,
                 initial_potential: PotentialArtifact | None, progress: ProgressCallback | None, max_iterations: int):
        self.backend, self.manifest, self.config = backend, manifest, config
        self.generation_dir = Path(generation_dir).resolve()
        self.initial_potential, self.progress, self.max_iterations = initial_potential, progress, max_iterations
        self.started = time.monotonic()
        self.deadline = self.started + config.timeout_seconds
        self.failed_attempt: Path | None = None
        self.log_path = self.generation_dir / backend.log_name

    def stage(self, fraction: float, message: str, iteration: int = 0) -> None:
        """A progress report between the tool's own ones."""
        report(self.progress, iteration, self.max_iterations, fraction, message)

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 1.0)

    def run_tool(self, command: Sequence[Any], what: str, output: str | None = None,
                 on_line: Callable[[str], None] | None = None, failure: str = "") -> None:
        """Run `command` in the generation directory, logged; raise when it fails or writes no `output`."""
        status = run_logged(command, self.generation_dir, self.log_path, self.deadline, on_line)
        if status != 0:
            raise tool_failed(what, status, self.log_path, failure)
        if output is not None and not (self.generation_dir / output).is_file():
            raise self.error(f"{what} exited normally but wrote no {output}" + (f": {failure}" if failure else ""))

    def error(self, message: str) -> TrainingError:
        return TrainingError(message, log_tail(self.log_path), self.log_path)

    def write_record(self, name: str, valid_file: Path | None, **fields: Any) -> dict[str, Any]:
        """The generation's record of what it trains (config, data and starting-point digests)."""
        record = {"config": self.config.model_dump(mode="json"), "config_digest": self.config.digest(),
                  "dataset_digest": self.manifest.digest,
                  "initial_potential": None if self.initial_potential is None else self.initial_potential.digest,
                  "valid_file_sha256": None if valid_file is None else sha256_file(valid_file), **fields}
        atomic_write_text(self.generation_dir / name, json.dumps(record, indent=1) + "\n")
        return record

    def subtract_baseline(self, data_files: dict[str, Any], names: dict[str, str],
                          write: Callable[[Path, Path, Any], None]) -> None:
        """Delta learning: each split's labels minus the baseline, written by `write(source, target,
        calculator)` to names[split]; data_files then points at those."""
        baseline = self.config.baseline
        if baseline is None:
            return
        self.stage(0.0, f"subtracting baseline {baseline.name} from the labels")
        calculator = baseline.build()
        for split, source in list(data_files.items()):
            write(Path(source), self.generation_dir / names[split], calculator)
            data_files[split] = names[split]
        if time.monotonic() > self.deadline:
            raise TrainingTimeout("time limit reached while evaluating the baseline")

    def finish(self, files: dict[str, str], metrics: dict[str, float], history: dict, version: str,
               iteration: int = 0, **fields: Any) -> PotentialArtifact:
        """metrics.json, then artifact.json last (its presence marks the generation as finished)."""
        metrics["wall_seconds"] = round(time.monotonic() - self.started, 3)
        atomic_write_text(self.generation_dir / METRICS_JSON,
                          json.dumps({"final": metrics, **history}, indent=1) + "\n")
        files = {**files, "log": self.backend.log_name, "metrics_json": METRICS_JSON}
        if self.config.baseline is not None:
            files.update({f"delta_{split}": name for split, name in self.backend.delta_data.items()
                          if (self.generation_dir / name).is_file()})
        fields.setdefault("backend", self.backend.name)
        fields.setdefault("elements", sorted(self.manifest.elements))
        fields.setdefault("config_digest", self.config.digest())  # what generations.find_matching compares
        artifact = PotentialArtifact(
            files=files,
            digests={role: sha256_file(self.generation_dir / name) for role, name in files.items()},
            metrics=metrics, version=version, dataset_digest=self.manifest.digest,
            initial_potential=None if self.initial_potential is None else self.initial_potential.digest,
            **{"baseline": self.config.baseline, **fields})
        artifact.save(self.generation_dir)
        self.stage(1.0, "done", iteration)
        return artifact


class Backend:
    """A training backend: `train` is the template; subclasses give the hooks below."""

    name: ClassVar[str]
    config_class: ClassVar[type[BaseTrainingConfig]]
    log_name: ClassVar[str]  # the tool's log in the generation directory
    delta_data: ClassVar[dict[str, str]] = {}  # split -> the file its baseline-subtracted labels go to
    tools: ClassVar[tuple[str, ...]] = ()  # its command-line tools
    install_hint: ClassVar[str] = ""
    iterations_field: ClassVar[str | None] = None  # the config's iteration count, for progress reports
    calculator: ClassVar[Callable[[PotentialArtifact, bool], Calculator]]  # (artifact, with_uncertainty)

    def __init__(self, executables: Mapping[str, str | Path] | None = None):
        """`executables` overrides where a tool is found, e.g. {"pacemaker": "/opt/ace/bin/pacemaker"}."""
        self.executables = dict(executables or {})
        unknown = sorted(set(self.executables) - set(self.tools))
        if unknown:
            raise ValueError(f"unknown {self.name} tool(s) {unknown}; known: {list(self.tools)}")

    @classmethod
    def beside(cls, python: str | Path | None) -> Backend:
        """This backend with its tools taken from beside `python` (run.yaml's backend_python), if given."""
        return cls({tool: Path(python).parent / tool for tool in cls.tools} if python is not None else None)

    def executable(self, tool: str) -> Path:
        """Where `tool` is: as configured, next to this interpreter, or on PATH."""
        return resolve_executable(tool, self.executables.get(tool), self.install_hint)

    def make_calculator(self, artifact: PotentialArtifact, with_uncertainty: bool = True) -> Calculator:
        """An ASE calculator for the artifact's potential, predicting totals (baseline included)."""
        return type(self).calculator(artifact, with_uncertainty)

    def train(self, manifest: DatasetManifest, config: BaseTrainingConfig, generation_dir: Path,
              initial_potential: PotentialArtifact | None = None, progress: ProgressCallback | None = None,
              **options: Any) -> PotentialArtifact:
        """Fit on the manifest's train split (its test split for test metrics); write one generation."""
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        run = TrainingRun(self, manifest, config, generation_dir, initial_potential, progress,
                          getattr(config, self.iterations_field) if self.iterations_field else 0)
        if initial_potential is not None:
            initial_potential.verify()
        plan = self._prepare(run, **options)  # everything that can be checked before hours of training
        with claim_generation_dir(run.generation_dir) as run.failed_attempt:
            return self._fit(run, plan)

    # -- hooks --------------------------------------------------------------------------------

    def _prepare(self, run: TrainingRun, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _fit(self, run: TrainingRun, plan: dict[str, Any]) -> PotentialArtifact:
        raise NotImplementedError
