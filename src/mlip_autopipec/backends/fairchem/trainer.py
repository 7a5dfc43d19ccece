"""FairChemTrainer: one generation of an EquiformerV2 or GemNet-OC model, trained by the real
`fairchem --mode train` (fairchem-core 1.10) in its own interpreter, in the generation directory
(`--run-dir`, so the logged `$ fairchem ...` line can be rerun there by hand): the manifest's splits
as ASE LMDB files, fairchem_config.yml (ours, or the user's with its dataset pointed at them),
fairchem_run.json (what was trained), FairChem's checkpoints/ID/, and test errors through the worker.

Fine-tuning (`initial_potential`, or `start_checkpoint`: a local checkpoint file) keeps the starting
model's architecture and strips its trainer state: training starts at step 0 from its weights.
Resuming (`resume_from`: a checkpoint.pt or a generation directory) passes the checkpoint as it is:
FairChem restores the optimizer and continues at its step, up to the (raised) max epochs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.base import DatasetError, PotentialArtifact
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
from mlip_autopipec.backends.runner import backend_environment, resolve_device
from mlip_autopipec.backends.template import Backend, TrainingRun, dataset_files, validation_file
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.files import sha256_file, sha256_text

CONFIG_YML = "fairchem_config.yml"
RUN_JSON = "fairchem_run.json"
LOG = "fairchem_train.log"
WORKER_LOG = "fairchem_worker.log"
DATA_DIR = "data"
START_CHECKPOINT = "start_checkpoint.pt"
RESUME_CHECKPOINT = "resume_checkpoint.pt"
DEFAULT_IDENTIFIER = "fairchem"


class FairChemTrainer(Backend):
    """Trains `backend` (equiformer_v2 | gemnet_oc) with the FairChem interpreter `python`
    (default: $MLIP_FAIRCHEM_PYTHON, else .venv-fairchem at the project root)."""

    name, config_class, log_name = "fairchem", FairChemConfig, LOG

    def __init__(self, python: str | os.PathLike | None = None, env: dict[str, str] | None = None):
        self.python = python
        self.env = dict(env or {})

    def make_calculator(self, artifact: PotentialArtifact, with_uncertainty: bool = True) -> Calculator:
        """FairChemCalculator (a server in the FairChem interpreter); no uncertainty: one model."""
        device = resolve_device(artifact_device(artifact), other_interpreter=True)
        return make_calculator(artifact, python=self.python, cpu=device == "cpu")

    def _prepare(self, run: TrainingRun, *, start_checkpoint: str | os.PathLike | None = None,
                 resume_from: str | os.PathLike | None = None, native_config: str | os.PathLike | dict | None = None,
                 identifier: str | None = None, valid_file: str | os.PathLike | None = None) -> dict:
        """`native_config` (a FairChem config yml or dict) replaces the one written from the config; its
        dataset is pointed at the manifest's data. `valid_file` (extxyz) is FairChem's validation set,
        which picks best_checkpoint.pt; without it the last checkpoint is the model."""
        config = run.config
        if self.name != "fairchem" and config.backend != self.name:
            raise ValueError(f"config.backend is {config.backend!r}, this trainer trains {self.name!r}")
        starts = [value is not None for value in (run.initial_potential, start_checkpoint, resume_from)]
        if sum(starts) > 1:
            raise ValueError("give one of initial_potential, start_checkpoint and resume_from")
        python = find_python(self.python)
        plan = {"python": python, "entry_point": fairchem_entry_point(python),
                "data_files": dataset_files(run.manifest, ["extxyz", "mace"]),
                "valid_file": validation_file(valid_file),
                "resume": resume_from is not None, "identifier": identifier or DEFAULT_IDENTIFIER,
                "native_name": str(native_config or "config"), "native_given": native_config is not None}
        plan["checkpoint_source"] = _checkpoint_source(run.initial_potential, start_checkpoint, resume_from)
        plan["source_config"] = _source_native_config(run.initial_potential, plan["checkpoint_source"],
                                                      resume_from is not None)
        plan["user_config"] = (native_config if isinstance(native_config, dict) or native_config is None
                               else load_native_config(native_config))
        return plan

    def _fit(self, run: TrainingRun, plan: dict) -> PotentialArtifact:
        config, generation_dir, python = run.config, run.generation_dir, plan["python"]
        checkpoint_source, resume, identifier = plan["checkpoint_source"], plan["resume"], plan["identifier"]
        run.stage(0.0, "writing the ASE LMDB datasets")
        valid = {"val": plan["valid_file"]} if plan["valid_file"] is not None else {}
        datasets = _write_lmdb({**plan["data_files"], **valid}, generation_dir / DATA_DIR)
        native = self._native_config(config, datasets, plan["user_config"], plan["source_config"],
                                     plan["native_name"])
        config_path = write_native_config(native, generation_dir / CONFIG_YML)
        record = run.write_record(
            RUN_JSON, plan["valid_file"], backend=config.backend, native_config_digest=sha256_file(config_path),
            checkpoint_source=None if checkpoint_source is None else str(checkpoint_source),
            checkpoint_sha256=None if checkpoint_source is None else sha256_file(checkpoint_source),
            mode="resume" if resume else "finetune" if checkpoint_source is not None else "train",
            identifier=identifier, python=str(python))

        arguments = ["--mode", "train", "--config-yml", CONFIG_YML, "--run-dir", ".", "--identifier", identifier,
                     "--timestamp-id", identifier, "--seed", str(config.seed), "--print-every", str(config.print_every)]
        device = resolve_device(config.device, other_interpreter=True)
        if device == "cpu":
            arguments.append("--cpu")
        if config.amp:
            arguments.append("--amp")
        if checkpoint_source is not None:
            name = RESUME_CHECKPOINT if resume else START_CHECKPOINT
            if resume:
                shutil.copyfile(checkpoint_source, generation_dir / name)
            else:
                strip = ["strip", "--source", str(checkpoint_source), "--target", str(generation_dir / name)]
                call_worker(python, strip, generation_dir / WORKER_LOG, run.remaining(), self.env)
            arguments += ["--checkpoint", name]
        arguments += config.extra_args

        watcher = FairChemLogWatcher(int(native["optim"]["max_epochs"]), run.progress)
        run.stage(0.0, f"starting fairchem ({config.backend})")
        checkpoint_dir = Path("checkpoints") / identifier
        with backend_environment(self.env):
            run.run_tool([python, plan["entry_point"], *arguments], "fairchem --mode train",
                         str(checkpoint_dir / "checkpoint.pt"), watcher.feed)
        last, best = checkpoint_dir / "checkpoint.pt", checkpoint_dir / "best_checkpoint.pt"
        model = best if (generation_dir / best).is_file() else last

        metrics = watcher.final_metrics()
        if "test" in plan["data_files"]:
            run.stage(0.95, "scoring the test split")
            from mlip_autopipec.backends.fairchem.inference import evaluate_frames

            test = evaluate_frames(python, generation_dir / model, plan["data_files"]["test"],
                                   generation_dir / "test_predictions.extxyz", generation_dir / WORKER_LOG,
                                   cpu=device == "cpu", timeout=run.remaining(), env=self.env)
            metrics.update({f"test_{key}": value for key, value in test.items()})
        files = {"checkpoint": str(model), "last_checkpoint": str(last), "config_yml": CONFIG_YML, "run_json": RUN_JSON}
        if checkpoint_source is not None:
            files["start_checkpoint"] = RESUME_CHECKPOINT if resume else START_CHECKPOINT
        # A config of ours digests as itself (generations.find_matching compares config.digest());
        # a native FairChem config given by the user is part of what was trained.
        extra = {} if not plan["native_given"] else {
            "config_digest": sha256_text(config.digest() + record["native_config_digest"])}
        version = f"fairchem-core {watcher.version}" if watcher.version else "fairchem-core (version not logged)"
        return run.finish(files, metrics, {"train_history": watcher.train_history, "val_history": watcher.val_history},
                          version, int(metrics.get("steps", 0)), backend=config.backend, **extra)

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


def artifact_device(artifact: PotentialArtifact) -> str:
    """The device the artifact was trained with ('auto' when unknown)."""
    try:
        record = json.loads(artifact.path("run_json").read_text())
        return record["config"].get("device", "auto")
    except (KeyError, OSError, ValueError):
        return "auto"


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
