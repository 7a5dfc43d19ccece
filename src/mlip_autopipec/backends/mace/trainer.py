"""MaceTrainer: one generation of a MACE model (or a committee: member k has seed + k), trained by
the real `mace_run_train` CLI in the generation directory, so the logged `$ mace_run_train ...` line
can be rerun there by hand. mace_config.json records our config and digests.

Fine-tuning starts from `initial_potential` (a MACE artifact) or `foundation_model` (a local .model):
both become `--foundation_model initial.model` (MACE keeps that architecture, starts from its
weights). Resuming (`resume_from`: a checkpoint .pt or a directory with checkpoints/) copies the
latest checkpoint into the generation and passes --restart_latest. With `resume_failed_attempts`
(default), a retry of the same config and data continues from the failed attempt's checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import DatasetError, PotentialArtifact
from mlip_autopipec.backends.mace.calculator import make_calculator
from mlip_autopipec.backends.mace.command import RunFiles, train_arguments
from mlip_autopipec.backends.mace.config import MaceConfig
from mlip_autopipec.backends.mace.log_watch import MaceLogWatcher
from mlip_autopipec.backends.mace.metrics import MetricsFormatError, collect_metrics, read_results
from mlip_autopipec.backends.runner import resolve_device
from mlip_autopipec.backends.template import (
    FAILED_ATTEMPTS,
    Backend,
    TrainingRun,
    dataset_elements,
    dataset_files,
    validation_file,
)
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import sha256_file

TOOLS = ("mace_run_train",)

# Our files in the generation directory.
CONFIG_JSON = "mace_config.json"
LOG = "mace_train.log"
INITIAL_MODEL = "initial.model"
DELTA_DATA = {"train": "delta_train_mace.extxyz", "test": "delta_test_mace.extxyz"}
MODEL_NAME = "mace"

_CHECKPOINT = re.compile(r"^(?P<tag>.+)_epoch-(?P<epoch>\d+)(?P<swa>_swa)?\.pt$")


INSTALL_HINT = ("Install MACE (pip install mace-torch, with the machine's torch; see requirements/) "
                "into this environment.")


def member_files(config: MaceConfig, member: int) -> RunFiles:
    """Names of committee member `member`'s files: member 0 is `mace`, the others `mace_memberK`."""
    name = MODEL_NAME if member == 0 else f"{MODEL_NAME}_member{member}"
    return RunFiles(name=name, seed=config.seed + member, swa=config.swa)


class MaceTrainer(Backend):
    name, config_class, log_name, delta_data = "mace", MaceConfig, LOG, DELTA_DATA
    tools, install_hint, iterations_field = TOOLS, INSTALL_HINT, "epochs"
    calculator = staticmethod(make_calculator)

    def _prepare(self, run: TrainingRun, *, foundation_model: str | os.PathLike | None = None,
                 resume_from: str | os.PathLike | None = None, valid_file: str | os.PathLike | None = None) -> dict:
        """Options: `foundation_model` (a local .model to fine-tune), `resume_from` (a checkpoint or a
        directory with checkpoints/), `valid_file` (MACE extxyz replacing the random `valid_fraction`
        hold-out of the train split as MACE's validation set)."""
        config, initial_potential = run.config, run.initial_potential
        if initial_potential is not None and foundation_model is not None:
            raise ValueError("give either initial_potential or foundation_model, not both")
        executable = self.executable("mace_run_train")
        data_files = dataset_files(run.manifest, ["mace"], min_train=2,
                                   why="MACE needs at least 2 (it holds out valid_fraction of them for validation)")
        elements = _model_elements(config, run.manifest, initial_potential)
        starting_model = _starting_model(initial_potential, foundation_model)
        resume_source = None if resume_from is None else _resume_source(Path(resume_from), config)
        valid_file = validation_file(valid_file)
        if valid_file is not None and config.baseline is not None:
            raise DatasetError("a separate validation file cannot be combined with delta learning (baseline)")
        # Checkpoints to resume from, found before an unfinished attempt in this very directory
        # (a resume in place) is moved aside, and followed there.
        explicit = {} if resume_source is None else {
            member: find_checkpoint(resume_source.resolve(), member_files(config, member).tag, any_tag=member == 0)
            for member in range(config.committee_size)}
        return {"executable": executable, "data_files": data_files, "elements": elements,
                "starting_model": starting_model, "valid_file": valid_file, "explicit": explicit}

    def _fit(self, run: TrainingRun, plan: dict) -> PotentialArtifact:
        config, generation_dir, failed_attempt = run.config, run.generation_dir, run.failed_attempt
        explicit, starting_model, data_files = plan["explicit"], plan["starting_model"], plan["data_files"]
        for member, checkpoint in explicit.items():
            if checkpoint is not None and failed_attempt is not None and checkpoint.is_relative_to(generation_dir) \
                    and not checkpoint.is_relative_to(generation_dir / FAILED_ATTEMPTS):
                explicit[member] = failed_attempt / checkpoint.relative_to(generation_dir)
        device = resolve_device(config.device)
        record = run.write_record(CONFIG_JSON, plan["valid_file"], device=device, starting_model_sha256=None
                                  if starting_model is None else sha256_file(starting_model))
        if starting_model is not None:
            shutil.copyfile(starting_model, generation_dir / INITIAL_MODEL)
        run.subtract_baseline(data_files, DELTA_DATA, write_delta_extxyz)

        watchers: list[MaceLogWatcher] = []
        for member in range(config.committee_size):
            files = member_files(config, member)
            restart = self._prepare_restart(run, files, explicit.get(member), bool(explicit), record)
            watcher = MaceLogWatcher(config.epochs, run.progress, member, config.committee_size)
            label = f"committee model {member + 1}/{config.committee_size}" if config.committee_size > 1 else ""
            run.stage(watcher.fraction(0.0), (f"{label}: " if label else "") + "starting mace_run_train")
            arguments = train_arguments(config, files, data_files["train"], data_files.get("test"), device,
                                        foundation_model=INITIAL_MODEL if starting_model is not None else None,
                                        restart=restart, valid_file=plan["valid_file"])
            run.run_tool([plan["executable"], *arguments], f"mace_run_train ({label})" if label else "mace_run_train",
                         files.model(), watcher.feed)
            watchers.append(watcher)
            run.stage(watcher.fraction(1.0), (f"{label}: " if label else "") + "trained", watcher.epochs_done)

        final_metrics, history = self._metrics(run, watchers)
        version = watchers[0].version
        return run.finish(self._artifact_files(config, generation_dir, starting_model is not None), final_metrics,
                          {"history": history},
                          f"mace-torch {version}" if version else "mace-torch (version not reported)",
                          watchers[0].epochs_done, elements=plan["elements"])

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _prepare_restart(run: TrainingRun, files: RunFiles, checkpoint: Path | None, explicit: bool,
                         record: dict) -> bool:
        """Copy the checkpoint to continue from (if any) into checkpoints/; True when there is one.

        An explicit resume source wins; otherwise a failed attempt of the same run is continued."""
        failed_attempt = run.failed_attempt
        if not explicit and failed_attempt is not None and run.config.resume_failed_attempts \
                and _same_run(failed_attempt, record):
            checkpoint = find_checkpoint(failed_attempt, files.tag, any_tag=False)
        if checkpoint is None:
            return False
        match = _CHECKPOINT.match(checkpoint.name)
        target = run.generation_dir / "checkpoints" / f"{files.tag}_epoch-{match['epoch']}{match['swa'] or ''}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, target)
        with open(run.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n# resuming from {checkpoint} (epoch {match['epoch']}) as {target.name}\n")
        return True

    @staticmethod
    def _metrics(run: TrainingRun, watchers: list[MaceLogWatcher]) -> tuple[dict[str, float], dict]:
        config, generation_dir = run.config, run.generation_dir
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
                raise run.error(f"cannot read MACE's metrics: {exc}") from exc
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
        files = {"model": first.model(), "mace_log": first.log, "config_json": CONFIG_JSON}
        if (generation_dir / first.model(compiled=True)).is_file():  # MACE skips it when TorchScript fails
            files["compiled_model"] = first.model(compiled=True)
        for member in range(1, config.committee_size):
            files[f"committee_model_{member}"] = member_files(config, member).model()
        if fine_tuned:
            files["initial_model"] = INITIAL_MODEL
        return {role: name for role, name in files.items() if (generation_dir / name).is_file()}


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
        return initial_potential.path("model")
    if foundation_model is not None:
        path = Path(foundation_model)
        if not path.is_file():
            raise DatasetError(f"{path}: foundation model file does not exist (only local .model files are "
                               "used; nothing is downloaded)")
        return path
    return None


def _model_elements(config: MaceConfig, manifest: DatasetManifest,
                    initial_potential: PotentialArtifact | None) -> list[str]:
    elements = data_elements = dataset_elements(manifest)
    if initial_potential is not None:
        missing = sorted(data_elements - set(initial_potential.elements))
        if missing:
            raise DatasetError(f"the dataset contains {missing}, which the initial potential does not cover "
                               f"(its elements {initial_potential.elements}); MACE fine-tuning keeps the "
                               "starting model's element embedding")
        if config.foundation_model_elements:
            elements = data_elements | set(initial_potential.elements)
    elements = sorted(elements)
    if isinstance(config.E0s, dict):
        missing = sorted(set(elements) - set(config.E0s))
        if missing:  # mace_run_train would stop on the first such atom, in every committee member
            raise DatasetError(f"E0s gives isolated-atom energies for {sorted(config.E0s)}, but the model's elements "
                               f"{elements} include {missing} without one; add them to E0s, or use E0s: average "
                               "(fitted by least squares on the training set)")
    return elements


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
