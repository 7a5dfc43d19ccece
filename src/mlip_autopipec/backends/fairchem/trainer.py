"""FairChemTrainer: one generation of an EquiformerV2 or GemNet-OC model, trained by the real
`fairchem --mode train` (fairchem-core 1.10) in its own interpreter.

Steps, all in the generation directory (`--run-dir`, so the logged `$ fairchem ...` line can be
rerun there by hand):
  1. the manifest's extxyz splits -> data/{train,val,test}.aselmdb (ASE LMDB, FairChem's AseDBDataset)
  2. fairchem_config.yml: written from the FairChemConfig, or the user's FairChem config with its
     dataset pointed at those files; fairchem_run.json records config, data and start digests
  3. `fairchem --mode train --config-yml fairchem_config.yml --run-dir . --identifier ID
     --timestamp-id ID --seed S [--cpu] [--amp] [--checkpoint C]`, streamed to fairchem_train.log;
     FairChem writes checkpoints/ID/{checkpoint,best_checkpoint}.pt, logs/, results/
  4. metrics.json from the log (last training line, last validation) and, with a test split,
     our own test errors through the worker; artifact.json last

Fine-tuning (`initial_potential`, or `start_checkpoint`: a local checkpoint file) keeps the starting
model's architecture, strips its trainer state (epoch, step, optimizer) and passes it as
`--checkpoint`: training starts at step 0 from its weights. Resuming (`resume_from`: a
checkpoint.pt, or a generation directory) passes the checkpoint as it is: FairChem restores the
optimizer and continues at its step, up to the (raised) max epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import (
    ARTIFACT_NAME,
    DatasetError,
    GenerationExistsError,
    PotentialArtifact,
    ProgressCallback,
    TrainingError,
    TrainingProgress,
)
from mlip_autopipec.backends.fairchem.calculator import make_calculator
from mlip_autopipec.backends.fairchem.config import FairChemConfig
from mlip_autopipec.backends.fairchem.interpreter import call_worker, fairchem_entry_point, find_python
from mlip_autopipec.backends.fairchem.log_watch import FairChemLogWatcher
from mlip_autopipec.backends.fairchem.native_config import (
    FITTED_TRANSFORMS,
    build_native_config,
    check_trainable,
    load_native_config,
    with_datasets,
    write_native_config,
)
from mlip_autopipec.backends.runner import backend_environment, log_tail, run_logged, tool_failed
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.files import atomic_write_text, sha256_file, sha256_text

CONFIG_YML = "fairchem_config.yml"
RUN_JSON = "fairchem_run.json"
LOG = "fairchem_train.log"
WORKER_LOG = "fairchem_worker.log"
METRICS_JSON = "metrics.json"
DATA_DIR = "data"
START_CHECKPOINT = "start_checkpoint.pt"
RESUME_CHECKPOINT = "resume_checkpoint.pt"
FAILED_ATTEMPTS = "failed-attempts"
DEFAULT_IDENTIFIER = "fairchem"


class FairChemTrainer:
    """Trains `backend` (equiformer_v2 | gemnet_oc) with the FairChem interpreter `python`
    (default: $MLIP_FAIRCHEM_PYTHON, else .venv-fairchem at the project root)."""

    name = "fairchem"

    def __init__(self, python: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None):
        self.python = python
        self.env = dict(env or {})
        self.extra_args = list(extra_args or [])

    def make_calculator(self, artifact: PotentialArtifact, with_uncertainty: bool = True) -> Calculator:
        """FairChemCalculator (a server in the FairChem interpreter); no uncertainty: one model."""
        return make_calculator(artifact, python=self.python, cpu=_device(artifact_device(artifact)) == "cpu")

    def train(
        self,
        manifest: DatasetManifest,
        config: FairChemConfig,
        generation_dir: Path,
        initial_potential: PotentialArtifact | None = None,
        progress: ProgressCallback | None = None,
        *,
        start_checkpoint: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None,
        native_config: str | os.PathLike | dict | None = None,
        identifier: str | None = None,
        valid_file: str | os.PathLike | None = None,
    ) -> PotentialArtifact:
        """Train one generation; see the module docstring. `native_config` (a FairChem config yml or
        dict) replaces the one written from `config`; its dataset is pointed at the manifest's data.
        `valid_file` (extxyz with energy and forces) is FairChem's validation set, which picks
        best_checkpoint.pt; without it there is no validation and the last checkpoint is the model."""
        if not isinstance(config, FairChemConfig):
            raise TypeError(f"{type(self).__name__} needs a FairChemConfig, got {type(config).__name__}")
        if self.name != "fairchem" and config.backend != self.name:
            raise ValueError(f"config.backend is {config.backend!r}, this trainer trains {self.name!r}")
        starts = [value is not None for value in (initial_potential, start_checkpoint, resume_from)]
        if sum(starts) > 1:
            raise ValueError("give one of initial_potential, start_checkpoint and resume_from")
        started = time.monotonic()
        deadline = started + config.timeout_seconds
        identifier = identifier or DEFAULT_IDENTIFIER

        # Everything that can be checked before training is checked first.
        python = find_python(self.python)
        entry_point = fairchem_entry_point(python)
        data_files = _dataset_files(manifest)
        if valid_file is not None:
            valid_file = Path(valid_file).resolve()
            if not valid_file.is_file():
                raise DatasetError(f"{valid_file}: validation file does not exist")
        checkpoint_source = _checkpoint_source(initial_potential, start_checkpoint, resume_from)
        source_config = _source_native_config(initial_potential, checkpoint_source, resume_from is not None)
        user_config = (native_config if isinstance(native_config, dict) or native_config is None
                       else load_native_config(native_config))

        generation_dir = Path(generation_dir).resolve()
        _claim_generation_dir(generation_dir)
        report = _Reporter(progress)
        report.stage(0.0, "writing the ASE LMDB datasets")
        splits = {**data_files, **({"val": valid_file} if valid_file is not None else {})}
        datasets = _write_lmdb(splits, generation_dir / DATA_DIR)
        native = self._native_config(config, datasets, user_config, source_config, str(native_config or "config"))
        config_path = write_native_config(native, generation_dir / CONFIG_YML)
        record = {
            "backend": config.backend, "config": config.model_dump(mode="json"), "config_digest": config.digest(),
            "native_config_digest": sha256_file(config_path), "dataset_digest": manifest.digest,
            "valid_file_sha256": None if valid_file is None else sha256_file(valid_file),
            "initial_potential": None if initial_potential is None else initial_potential.digest,
            "checkpoint_source": None if checkpoint_source is None else str(checkpoint_source),
            "checkpoint_sha256": None if checkpoint_source is None else sha256_file(checkpoint_source),
            "mode": "resume" if resume_from is not None else "finetune" if checkpoint_source is not None else "train",
            "identifier": identifier, "python": str(python),
        }
        atomic_write_text(generation_dir / RUN_JSON, json.dumps(record, indent=1) + "\n")

        arguments = ["--mode", "train", "--config-yml", CONFIG_YML, "--run-dir", ".", "--identifier", identifier,
                     "--timestamp-id", identifier, "--seed", str(config.seed), "--print-every", str(config.print_every)]
        device = _device(config.device)
        if device == "cpu":
            arguments.append("--cpu")
        if config.amp:
            arguments.append("--amp")
        if checkpoint_source is not None:
            name = RESUME_CHECKPOINT if resume_from is not None else START_CHECKPOINT
            if resume_from is not None:
                shutil.copyfile(checkpoint_source, generation_dir / name)
            else:
                call_worker(python, ["strip", "--source", str(checkpoint_source), "--target",
                                     str(generation_dir / name)],
                            generation_dir / WORKER_LOG, max(deadline - time.monotonic(), 1.0), self.env)
            arguments += ["--checkpoint", name]
        arguments += config.extra_args + self.extra_args

        log_path = generation_dir / LOG
        watcher = FairChemLogWatcher(int(native["optim"]["max_epochs"]), progress)
        report.stage(0.0, f"starting fairchem ({config.backend})")
        with backend_environment(self.env):
            status = run_logged([python, entry_point, *arguments], generation_dir, log_path, deadline, watcher.feed)
        if status != 0:
            raise tool_failed("fairchem --mode train", status, log_path)
        checkpoint_dir = generation_dir / "checkpoints" / identifier
        last = checkpoint_dir / "checkpoint.pt"
        best = checkpoint_dir / "best_checkpoint.pt"
        if not last.is_file():
            raise TrainingError(f"fairchem exited normally but wrote no {last.relative_to(generation_dir)}",
                                log_tail(log_path), log_path)

        metrics = watcher.final_metrics()
        if "test" in data_files:
            report.stage(0.95, "scoring the test split")
            from mlip_autopipec.backends.fairchem.inference import evaluate_frames_file

            test = evaluate_frames_file(python, best if best.is_file() else last, data_files["test"],
                                        generation_dir / "test_predictions.extxyz", generation_dir / WORKER_LOG,
                                        cpu=device == "cpu", timeout=max(deadline - time.monotonic(), 1.0),
                                        env=self.env)
            metrics.update({f"test_{key}": value for key, value in test.items()})
        metrics["wall_seconds"] = round(time.monotonic() - started, 3)
        atomic_write_text(generation_dir / METRICS_JSON,
                          json.dumps({"final": metrics, "train_history": watcher.train_history,
                                      "val_history": watcher.val_history}, indent=1) + "\n")

        files = {"checkpoint": str((best if best.is_file() else last).relative_to(generation_dir)),
                 "last_checkpoint": str(last.relative_to(generation_dir)),
                 "config_yml": CONFIG_YML, "run_json": RUN_JSON, "log": LOG, "metrics_json": METRICS_JSON}
        if checkpoint_source is not None:
            files["start_checkpoint"] = RESUME_CHECKPOINT if resume_from is not None else START_CHECKPOINT
        artifact = PotentialArtifact(
            backend=config.backend,
            elements=sorted(manifest.elements),
            files=files,
            digests={role: sha256_file(generation_dir / name) for role, name in files.items()},
            metrics=metrics,
            version=f"fairchem-core {watcher.version}" if watcher.version else "fairchem-core (version not logged)",
            dataset_digest=manifest.digest,
            config_digest=sha256_text(config.digest() + record["native_config_digest"]),
            initial_potential=None if initial_potential is None else initial_potential.digest,
        )
        artifact.save(generation_dir)  # last: its presence marks the generation as finished
        report.stage(1.0, "done", int(metrics.get("steps", 0)))
        return artifact

    @staticmethod
    def _native_config(config: FairChemConfig, datasets: dict[str, Path], user_config: dict | None,
                       source_config: dict | None, source_name: str) -> dict[str, Any]:
        """The config to train with: ours or the user's, with the starting checkpoint's model section
        (its architecture must match the weights), the datasets and the epoch count of this run."""
        if user_config is not None:
            # A training set without transforms gets ours: total DFT energies (-1e4 eV and more) are
            # not learnable without element references and a normaliser.
            native = with_datasets(user_config, datasets, transforms=FITTED_TRANSFORMS, source=source_name)
        else:
            native = build_native_config(config, datasets)
        if source_config is not None:
            native["model"] = source_config["model"]
            # The starting checkpoint carries the fitted normalisers and element references; FairChem
            # reloads them from it, so none are fitted anew.
            for split in native.get("dataset", {}).values():
                if isinstance(split, dict):
                    split.pop("transforms", None)
        if user_config is None or "max_epochs" not in (user_config.get("optim") or {}):
            native.setdefault("optim", {})["max_epochs"] = config.epochs
        check_trainable(native, source_name)
        return native


class EquiformerV2Trainer(FairChemTrainer):
    name = "equiformer_v2"


class GemNetOCTrainer(FairChemTrainer):
    name = "gemnet_oc"


class _Reporter:
    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress

    def stage(self, fraction: float, message: str, iteration: int = 0) -> None:
        if self.progress is not None:
            self.progress(TrainingProgress(iteration=iteration, max_iterations=0, loss=None,
                                           fraction=min(max(fraction, 0.0), 1.0), message=message))


def artifact_device(artifact: PotentialArtifact) -> str:
    """The device the artifact was trained with ('auto' when unknown)."""
    try:
        record = json.loads(artifact.path("run_json").read_text())
        return record["config"].get("device", "auto")
    except (KeyError, OSError, ValueError):
        return "auto"


def _device(requested: str) -> str:
    """cpu or cuda. 'auto' picks cuda only where an NVIDIA driver is visible: the FairChem
    interpreter's torch cannot be asked from here, and --cpu must be passed on a machine without one."""
    if requested != "auto":
        return requested
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "" or shutil.which("nvidia-smi") is None:
        return "cpu"
    return "cuda"


def find_checkpoint(source: Path) -> Path | None:
    """A checkpoint file itself, or the newest checkpoints/*/checkpoint.pt of a generation or run dir."""
    if source.is_file():
        return source
    candidates = sorted(source.glob("checkpoints/*/checkpoint.pt")) + sorted(source.glob("train/checkpoints/*/checkpoint.pt"))
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def _checkpoint_source(initial_potential: PotentialArtifact | None, start_checkpoint, resume_from) -> Path | None:
    if initial_potential is not None:
        if initial_potential.backend not in ("equiformer_v2", "gemnet_oc"):
            raise DatasetError(f"cannot fine-tune a FairChem model from a {initial_potential.backend} potential")
        initial_potential.verify()
        return initial_potential.path("checkpoint").resolve()
    for label, value in (("start checkpoint", start_checkpoint), ("checkpoint to resume from", resume_from)):
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise DatasetError(f"{path}: {label} does not exist (only local files are used; nothing is downloaded)")
        found = find_checkpoint(path.resolve())
        if found is None:
            raise DatasetError(f"{path}: no FairChem checkpoint (checkpoints/*/checkpoint.pt) in this directory")
        return found
    return None


def _source_native_config(initial_potential: PotentialArtifact | None, checkpoint: Path | None,
                          resume: bool) -> dict | None:
    """The FairChem config the starting checkpoint was trained with (its model section is reused)."""
    if initial_potential is not None:
        return load_native_config(initial_potential.path("config_yml"))
    if checkpoint is None:
        return None
    for candidate in (checkpoint.parent.parent.parent / CONFIG_YML, checkpoint.parent / CONFIG_YML):
        if candidate.is_file():
            return load_native_config(candidate)
    if resume:
        raise ConfigError(f"{checkpoint}: no {CONFIG_YML} of the run it belongs to (looked in "
                          f"{checkpoint.parent.parent.parent}); give the FairChem config (train.config_yml) "
                          "it was trained with")
    return None  # a foreign checkpoint: the given config must describe its architecture


def _dataset_files(manifest: DatasetManifest) -> dict[str, Path]:
    """The manifest's extxyz (or MACE extxyz) files by split, checked against their digests."""
    where = manifest.directory or "the manifest"
    files: dict[str, Path] = {}
    for entry in manifest.files:
        if entry.format not in ("extxyz", "mace") or entry.split in files:
            continue
        if entry.format == "mace" and any(other.format == "extxyz" and other.split == entry.split
                                          for other in manifest.files):
            continue
        path = manifest.path_of(entry.format, entry.split).resolve()
        if entry.frames == 0:
            if entry.split == "train":
                raise DatasetError(f"{path}: the training set is empty")
            continue
        if not path.is_file():
            raise DatasetError(f"{path}: {entry.split} file listed in the manifest does not exist")
        if sha256_file(path) != entry.sha256:
            raise DatasetError(f"{path}: {entry.split} file changed since export (sha256 differs from the manifest)")
        files[entry.split] = path
    if "train" not in files:
        raise DatasetError(f"{where}: no extxyz train file; the dataset is empty or was exported without the "
                           "'extxyz' format")
    return files


def _write_lmdb(data_files: dict[str, Path], directory: Path) -> dict[str, Path]:
    """Each split as an ASE LMDB file with energy and forces as calculator results."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlip_autopipec.data.ase_lmdb import write_ase_lmdb

    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, source in data_files.items():
        frames = []
        for index, atoms in enumerate(ase.io.read(source, index=":", format="extxyz")):
            results = dict(atoms.calc.results) if atoms.calc is not None else {}
            energy = atoms.info.get("REF_energy", results.get("energy"))
            forces = atoms.arrays.get("REF_forces", results.get("forces"))
            if energy is None or forces is None:
                raise DatasetError(f"{source}: frame {index} has no {'energy' if energy is None else 'forces'} "
                                   "(REF_energy / REF_forces or the calculator's results)")
            frame = atoms.copy()
            frame.info = {}
            frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=forces)
            frames.append(frame)
        target = directory / f"{split}.aselmdb"
        if target.exists():
            target.unlink()
        write_ase_lmdb(frames, target)
        written[split] = target
    return written


def _claim_generation_dir(generation_dir: Path) -> None:
    """Refuse a finished generation; move an unfinished attempt's files to failed-attempts/attempt-N."""
    if (generation_dir / ARTIFACT_NAME).exists():
        raise GenerationExistsError(f"{generation_dir} already holds a finished generation ({ARTIFACT_NAME}); "
                                    "generations are never overwritten: train into a new directory")
    generation_dir.mkdir(parents=True, exist_ok=True)
    leftovers = [path for path in generation_dir.iterdir() if path.name != FAILED_ATTEMPTS]
    if not leftovers:
        return
    attempts = generation_dir / FAILED_ATTEMPTS
    numbers = [int(path.name.split("-")[1]) for path in attempts.glob("attempt-*") if path.name.split("-")[1].isdigit()]
    target = attempts / f"attempt-{max(numbers, default=0) + 1}"
    target.mkdir(parents=True)
    for path in leftovers:
        path.rename(target / path.name)


__all__ = ["EquiformerV2Trainer", "FairChemTrainer", "GemNetOCTrainer", "find_checkpoint"]
