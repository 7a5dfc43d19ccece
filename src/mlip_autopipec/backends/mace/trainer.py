"""MaceTrainer: one generation of a MACE model (or a committee of them), trained by the real
`mace_run_train` CLI in a subprocess.

Steps, all in the generation directory (MACE's working directory, so a user can rerun the logged
`$ mace_run_train ...` line there by hand):
  1. check the dataset (the manifest's `mace` extxyz files, keys REF_energy / REF_forces) and
     the starting model; with a baseline, write the delta datasets
  2. write mace_config.json (our config and digests); copy the starting model to initial.model
  3. for each committee member k (seed + k): `mace_run_train --name NAME --seed SEED ...`,
     streamed to mace_train.log with per-epoch progress; MACE writes NAME.model,
     NAME_compiled.model, logs/NAME_run-SEED.log, checkpoints/, results/
  4. metrics.json from MACE's final error tables and its results file; artifact.json last

Fine-tuning starts from `initial_potential` (a MACE artifact) or `foundation_model` (a local
.model file): both become `--foundation_model initial.model`, so MACE keeps that model's
architecture and starts from its weights. Resuming (`resume_from`: a checkpoint .pt, or a directory
holding checkpoints/) copies the latest checkpoint into the new generation and passes
--restart_latest: training continues at that checkpoint's epoch up to `epochs`.

Generations are never overwritten (GenerationExistsError). Leftovers of an unfinished attempt
are moved to failed-attempts/attempt-N/; with `resume_failed_attempts` (default) and the same
config and data, the retry continues from that attempt's latest checkpoint instead of epoch 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import (
    ARTIFACT_NAME,
    BaseTrainingConfig,
    DatasetError,
    GenerationExistsError,
    PotentialArtifact,
    ProgressCallback,
    TrainingError,
    TrainingProgress,
    TrainingTimeout,
)
from mlip_autopipec.backends.mace.calculator import make_calculator
from mlip_autopipec.backends.mace.command import RunFiles, resolve_device, train_arguments
from mlip_autopipec.backends.mace.config import MaceConfig
from mlip_autopipec.backends.mace.log_watch import MaceLogWatcher
from mlip_autopipec.backends.mace.metrics import MetricsFormatError, collect_metrics, read_results
from mlip_autopipec.backends.runner import log_tail, resolve_executable, run_logged, tool_failed
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import atomic_write_text, sha256_file

TOOLS = ("mace_run_train",)
FAILED_ATTEMPTS = "failed-attempts"

# Our files in the generation directory.
CONFIG_JSON = "mace_config.json"
LOG = "mace_train.log"
METRICS_JSON = "metrics.json"
INITIAL_MODEL = "initial.model"
DELTA_DATA = {"train": "delta_train_mace.extxyz", "test": "delta_test_mace.extxyz"}
MODEL_NAME = "mace"

_CHECKPOINT = re.compile(r"^(?P<tag>.+)_epoch-(?P<epoch>\d+)(?P<swa>_swa)?\.pt$")


def member_files(config: MaceConfig, member: int) -> RunFiles:
    """Names of committee member `member`'s files: member 0 is `mace`, the others `mace_memberK`."""
    name = MODEL_NAME if member == 0 else f"{MODEL_NAME}_member{member}"
    return RunFiles(name=name, seed=config.seed + member)


INSTALL_HINT = ("Install MACE (pip install mace-torch, with the machine's torch; see requirements/) "
                "into this environment.")


class MaceTrainer:
    name = "mace"

    def __init__(self, executables: Mapping[str, str | Path] | None = None):
        """`executables` overrides where a tool is found, e.g. {"mace_run_train": "/opt/mace/bin/mace_run_train"}."""
        self.executables = dict(executables or {})
        unknown = sorted(set(self.executables) - set(TOOLS))
        if unknown:
            raise ValueError(f"unknown MACE tool(s) {unknown}; known: {list(TOOLS)}")

    def make_calculator(self, artifact: PotentialArtifact, with_uncertainty: bool = True) -> Calculator:
        return make_calculator(artifact, with_uncertainty=with_uncertainty)

    def train(
        self,
        manifest: DatasetManifest,
        config: BaseTrainingConfig,
        generation_dir: Path,
        initial_potential: PotentialArtifact | None = None,
        progress: ProgressCallback | None = None,
        *,
        foundation_model: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None,
        valid_file: str | os.PathLike | None = None,
    ) -> PotentialArtifact:
        """Train one generation; see the module docstring. `valid_file` (MACE extxyz) replaces the
        random `valid_fraction` hold-out of the train split as MACE's validation set."""
        if not isinstance(config, MaceConfig):
            raise TypeError(f"MaceTrainer needs a MaceConfig, got {type(config).__name__}")
        if initial_potential is not None and foundation_model is not None:
            raise ValueError("give either initial_potential or foundation_model, not both")
        started = time.monotonic()
        deadline = started + config.timeout_seconds

        # Everything that can be checked before hours of training is checked first.
        executable = resolve_executable("mace_run_train", self.executables.get("mace_run_train"), INSTALL_HINT)
        data_files = _dataset_files(manifest)
        elements = _model_elements(config, manifest, initial_potential)
        starting_model = _starting_model(initial_potential, foundation_model)
        resume_source = None if resume_from is None else _resume_source(Path(resume_from), config)
        device = resolve_device(config.device)
        if valid_file is not None:
            valid_file = Path(valid_file).resolve()
            if not valid_file.is_file():
                raise DatasetError(f"{valid_file}: validation file does not exist")
            if config.baseline is not None:
                raise DatasetError("a separate validation file cannot be combined with delta learning (baseline)")

        generation_dir = Path(generation_dir).resolve()
        # Checkpoints to resume from, found before an unfinished attempt in this very directory
        # (a resume in place) is moved aside, and followed there.
        explicit = {} if resume_source is None else {
            member: find_checkpoint(resume_source.resolve(), member_files(config, member).tag, any_tag=member == 0)
            for member in range(config.committee_size)}
        failed_attempt = _claim_generation_dir(generation_dir)
        for member, checkpoint in explicit.items():
            if checkpoint is not None and failed_attempt is not None and checkpoint.is_relative_to(generation_dir) \
                    and not checkpoint.is_relative_to(generation_dir / FAILED_ATTEMPTS):
                explicit[member] = failed_attempt / checkpoint.relative_to(generation_dir)
        log_path = generation_dir / LOG
        report = _Reporter(progress, config.epochs)
        record = {
            "config": config.model_dump(mode="json"), "config_digest": config.digest(),
            "dataset_digest": manifest.digest, "device": device,
            "initial_potential": None if initial_potential is None else initial_potential.digest,
            "starting_model_sha256": None if starting_model is None else sha256_file(starting_model),
            "valid_file_sha256": None if valid_file is None else sha256_file(valid_file),
        }
        atomic_write_text(generation_dir / CONFIG_JSON, json.dumps(record, indent=1) + "\n")

        if starting_model is not None:
            shutil.copyfile(starting_model, generation_dir / INITIAL_MODEL)
        if config.baseline is not None:
            report.stage(0.0, f"subtracting baseline {config.baseline.name} from the labels")
            baseline = config.baseline.build()
            for split, source in list(data_files.items()):
                write_delta_extxyz(Path(source), generation_dir / DELTA_DATA[split], baseline)
                data_files[split] = DELTA_DATA[split]
            if time.monotonic() > deadline:
                raise TrainingTimeout("time limit reached while evaluating the baseline")

        watchers: list[MaceLogWatcher] = []
        for member in range(config.committee_size):
            files = member_files(config, member)
            restart = self._prepare_restart(files, generation_dir, explicit.get(member), resume_source is not None,
                                            failed_attempt, record, config, log_path)
            watcher = MaceLogWatcher(config.epochs, progress, member, config.committee_size)
            report.stage(watcher.fraction(0.0), _member_text(config, member, "starting mace_run_train"))
            arguments = train_arguments(config, files, data_files["train"], data_files.get("test"), device,
                                        foundation_model=INITIAL_MODEL if starting_model is not None else None,
                                        restart=restart, valid_file=valid_file)
            status = run_logged([executable, *arguments], generation_dir, log_path, deadline, watcher.feed)
            if status != 0:
                raise tool_failed("mace_run_train" + _member_text(config, member, "", prefix=" ("), status, log_path)
            final_model = files.stagetwo_model if config.swa else files.model
            if not (generation_dir / final_model).is_file():
                raise TrainingError(f"mace_run_train exited normally but wrote no {final_model}",
                                    log_tail(log_path), log_path)
            watchers.append(watcher)
            report.stage(watcher.fraction(1.0), _member_text(config, member, "trained"),
                         watcher.epochs_seen[-1] + 1 if watcher.epochs_seen else 0)

        final_metrics, history = self._metrics(config, generation_dir, watchers, log_path)
        final_metrics["wall_seconds"] = round(time.monotonic() - started, 3)
        atomic_write_text(generation_dir / METRICS_JSON,
                          json.dumps({"final": final_metrics, "history": history}, indent=1) + "\n")

        files = self._artifact_files(config, generation_dir, starting_model is not None)
        version = watchers[0].version
        artifact = PotentialArtifact(
            backend=self.name,
            elements=elements,
            files=files,
            digests={role: sha256_file(generation_dir / name) for role, name in files.items()},
            metrics=final_metrics,
            version=f"mace-torch {version}" if version else "mace-torch (version not reported)",
            dataset_digest=manifest.digest,
            config_digest=config.digest(),
            initial_potential=None if initial_potential is None else initial_potential.digest,
            baseline=config.baseline,
        )
        artifact.save(generation_dir)  # last: its presence marks the generation as finished
        report.stage(1.0, "done", watchers[0].epochs_seen[-1] + 1 if watchers[0].epochs_seen else 0)
        return artifact

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _prepare_restart(files: RunFiles, generation_dir: Path, checkpoint: Path | None, explicit: bool,
                         failed_attempt: Path | None, record: dict, config: MaceConfig, log_path: Path) -> bool:
        """Copy the checkpoint to continue from (if any) into checkpoints/; True when there is one.

        An explicit resume source wins; otherwise a failed attempt of the same run is continued."""
        if not explicit and failed_attempt is not None and config.resume_failed_attempts \
                and _same_run(failed_attempt, record):
            checkpoint = find_checkpoint(failed_attempt, files.tag, any_tag=False)
        if checkpoint is None:
            return False
        match = _CHECKPOINT.match(checkpoint.name)
        target = generation_dir / files.checkpoints_dir / f"{files.tag}_epoch-{match['epoch']}{match['swa'] or ''}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, target)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n# resuming from {checkpoint} (epoch {match['epoch']}) as {target.name}\n")
        return True

    @staticmethod
    def _metrics(config: MaceConfig, generation_dir: Path, watchers: list[MaceLogWatcher], log_path: Path
                 ) -> tuple[dict[str, float], dict]:
        final: dict[str, float] = {}
        history: dict = {}
        for member, watcher in enumerate(watchers):
            files = member_files(config, member)
            try:
                log_text = (generation_dir / files.log).read_text(errors="replace")
                results_path = generation_dir / files.results
                entries = read_results(results_path) if results_path.is_file() else []
                metrics, member_history = collect_metrics(log_text, entries, watcher.best_epoch)
            except (OSError, MetricsFormatError) as exc:
                raise TrainingError(f"cannot read MACE's metrics: {exc}", log_tail(log_path), log_path) from exc
            if watcher.restarted_from_epoch is not None:
                metrics["resumed_from_epoch"] = float(watcher.restarted_from_epoch)
            metrics = {key: value for key, value in metrics.items() if value is not None}
            if member == 0:
                final.update(metrics)
                history = member_history
            else:
                final.update({f"member{member}_{key}": value for key, value in metrics.items()
                              if key.startswith(("test_", "valid_"))})
                history[f"member{member}"] = member_history
        final["committee_size"] = float(config.committee_size)
        return final, history

    @staticmethod
    def _artifact_files(config: MaceConfig, generation_dir: Path, fine_tuned: bool) -> dict[str, str]:
        first = member_files(config, 0)
        model, compiled = ((first.stagetwo_model, first.stagetwo_compiled_model) if config.swa
                           else (first.model, first.compiled_model))
        files = {"model": model, "log": LOG, "mace_log": first.log, "metrics_json": METRICS_JSON,
                 "config_json": CONFIG_JSON}
        if (generation_dir / compiled).is_file():  # MACE skips it silently when TorchScript fails
            files["compiled_model"] = compiled
        for member in range(1, config.committee_size):
            other = member_files(config, member)
            files[f"committee_model_{member}"] = other.stagetwo_model if config.swa else other.model
        if fine_tuned:
            files["initial_model"] = INITIAL_MODEL
        if config.baseline is not None:
            files.update({f"delta_{split}": name for split, name in DELTA_DATA.items()
                          if (generation_dir / name).is_file()})
        return {role: name for role, name in files.items() if (generation_dir / name).is_file()}


class _Reporter:
    def __init__(self, progress: ProgressCallback | None, epochs: int):
        self.progress = progress
        self.epochs = epochs

    def stage(self, fraction: float, message: str, iteration: int = 0) -> None:
        if self.progress is not None:
            self.progress(TrainingProgress(iteration=iteration, max_iterations=self.epochs, loss=None,
                                           fraction=min(max(fraction, 0.0), 1.0), message=message))


def _member_text(config: MaceConfig, member: int, text: str, prefix: str = "") -> str:
    if config.committee_size == 1:
        return text
    label = f"committee model {member + 1}/{config.committee_size}"
    if prefix:
        return f"{prefix}{label})"
    return f"{label}: {text}"


def find_checkpoint(source: Path, tag: str, any_tag: bool) -> Path | None:
    """The latest-epoch MACE checkpoint in `source` (a .pt file, or a directory with checkpoints/).

    Checkpoints of `tag` are preferred; with `any_tag`, another run's checkpoints are taken when
    `source` has none of `tag` (a single-model run resumed under our own name).
    """
    if source.is_file():
        return source
    candidates = [path for directory in (source / "checkpoints", source) if directory.is_dir()
                  for path in directory.iterdir() if _CHECKPOINT.match(path.name)]
    own = [path for path in candidates if _CHECKPOINT.match(path.name)["tag"] == tag]
    pool = own or (candidates if any_tag else [])
    if not pool:
        return None
    return max(pool, key=lambda path: (int(_CHECKPOINT.match(path.name)["epoch"]), path.name.endswith("_swa.pt")))


def _resume_source(path: Path, config: MaceConfig) -> Path:
    if not path.exists():
        raise DatasetError(f"{path}: checkpoint to resume from does not exist")
    if path.is_file() and not _CHECKPOINT.match(path.name):
        raise DatasetError(f"{path}: not a MACE checkpoint name (NAME_run-SEED_epoch-N.pt); MACE needs the "
                           "epoch in the file name to continue from it")
    if find_checkpoint(path, member_files(config, 0).tag, any_tag=True) is None:
        raise DatasetError(f"{path}: no MACE checkpoint (checkpoints/*_epoch-N.pt) to resume from")
    return path


def _same_run(attempt: Path, record: dict) -> bool:
    """The failed attempt trained the same config on the same data from the same start."""
    try:
        previous = json.loads((attempt / CONFIG_JSON).read_text())
    except (OSError, ValueError):
        return False
    keys = ("config_digest", "dataset_digest", "initial_potential", "starting_model_sha256", "valid_file_sha256")
    return all(previous.get(key) == record.get(key) for key in keys)


def _starting_model(initial_potential: PotentialArtifact | None, foundation_model) -> Path | None:
    if initial_potential is not None:
        if initial_potential.backend != "mace":
            raise DatasetError(f"cannot fine-tune a MACE model from a {initial_potential.backend} potential; "
                               "start from a MACE artifact or a local .model file")
        initial_potential.verify()
        return initial_potential.path("model")
    if foundation_model is not None:
        path = Path(foundation_model)
        if not path.is_file():
            raise DatasetError(f"{path}: foundation model file does not exist (only local .model files are "
                               "used; nothing is downloaded)")
        return path
    return None


def _dataset_files(manifest: DatasetManifest) -> dict[str, str]:
    """Absolute paths of the MACE extxyz train (and test, if any) files, checked against the manifest."""
    entries = {entry.split: entry for entry in manifest.files if entry.format == "mace"}
    where = manifest.directory or "the manifest"
    if "train" not in entries:
        raise DatasetError(f"{where}: no mace-format train file; the dataset is empty or was exported "
                           f"without the 'mace' format")
    files = {}
    for split, entry in entries.items():
        path = manifest.path_of("mace", split).resolve()
        if entry.frames == 0:
            if split == "train":
                raise DatasetError(f"{path}: the training set is empty")
            continue
        if split == "train" and entry.frames < 2:
            raise DatasetError(f"{path}: {entry.frames} training structure; MACE needs at least 2 "
                               "(it holds out valid_fraction of them for validation)")
        if not path.is_file():
            raise DatasetError(f"{path}: {split} file listed in the manifest does not exist")
        if sha256_file(path) != entry.sha256:
            raise DatasetError(f"{path}: {split} file changed since export (sha256 differs from the manifest)")
        files[split] = str(path)
    return files


def _model_elements(config: MaceConfig, manifest: DatasetManifest,
                    initial_potential: PotentialArtifact | None) -> list[str]:
    elements = _elements_of_the_model(config, manifest, initial_potential)
    if isinstance(config.E0s, dict):
        missing = sorted(set(elements) - set(config.E0s))
        if missing:  # mace_run_train would stop on the first such atom, in every committee member
            raise DatasetError(f"E0s gives isolated-atom energies for {sorted(config.E0s)}, but the model's elements "
                               f"{elements} include {missing} without one; add them to E0s, or use E0s: average "
                               "(fitted by least squares on the training set)")
    return elements


def _elements_of_the_model(config: MaceConfig, manifest: DatasetManifest,
                           initial_potential: PotentialArtifact | None) -> list[str]:
    data_elements = set(manifest.elements)
    if not data_elements:
        raise DatasetError("the dataset manifest lists no elements: the dataset is empty")
    if initial_potential is None:
        return sorted(data_elements)
    missing = sorted(data_elements - set(initial_potential.elements))
    if missing:
        raise DatasetError(f"the dataset contains {missing}, which the initial potential does not cover "
                           f"(its elements {initial_potential.elements}); MACE fine-tuning keeps the "
                           "starting model's element embedding")
    if config.foundation_model_elements:
        return sorted(data_elements | set(initial_potential.elements))
    return sorted(data_elements)


def write_delta_extxyz(source: Path, target: Path, baseline: Calculator) -> None:
    """MACE extxyz with the baseline's energy, forces (and stress) subtracted from the REF_ labels."""
    import ase.io
    import numpy as np

    frames = ase.io.read(source, index=":", format="extxyz")
    for atoms in frames:
        geometry = atoms.copy()
        geometry.calc = baseline
        atoms.info["REF_energy"] = float(atoms.info["REF_energy"]) - geometry.get_potential_energy()
        atoms.arrays["REF_forces"] = np.asarray(atoms.arrays["REF_forces"]) - geometry.get_forces()
        if "REF_stress" in atoms.info:
            try:
                atoms.info["REF_stress"] = np.asarray(atoms.info["REF_stress"]) - geometry.get_stress(voigt=True)
            except Exception:  # a baseline without stress: the stress label cannot be made a delta
                del atoms.info["REF_stress"]
    ase.io.write(target, frames, format="extxyz")


def _claim_generation_dir(generation_dir: Path) -> Path | None:
    """Refuse a finished generation; move an unfinished attempt's files aside and return where to."""
    if (generation_dir / ARTIFACT_NAME).exists():
        raise GenerationExistsError(f"{generation_dir} already holds a finished generation ({ARTIFACT_NAME}); "
                                    "generations are never overwritten: train into a new directory")
    generation_dir.mkdir(parents=True, exist_ok=True)
    leftovers = [path for path in generation_dir.iterdir() if path.name != FAILED_ATTEMPTS]
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


__all__ = ["MaceTrainer", "find_checkpoint", "member_files", "write_delta_extxyz"]
