"""The run.yaml runner of the Pacemaker backend (see backends/run_yaml.py).

    train     data.train (+ data.test, else data.val, as pacemaker's test set) -> RUN_DIR/train/ + artifacts/
    finetune  the same from model_in (a generation or run directory, artifact.json, or a potential .yaml);
              train.input_json's fine_tune chooses 'continue' or 'upfit'
    resume    from model_in: a finished generation, or the interim_potential_*.yaml an interrupted fit left
    infer     also writes per-atom γ

train.input_json holds PacemakerConfig keys; the train knobs epochs/batch_size/seed map to maxiter/batch_size/seed.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from mlip_autopipec.backends.base import ARTIFACT_NAME, DatasetError, PotentialArtifact, ProgressCallback
from mlip_autopipec.backends.run_yaml import (
    DATA_DIR,
    GENERATION_DIR,
    evaluated,
    generation_in,
    progress_bar,
    split_frames,
    trained,
)
from mlip_autopipec.backends.runner import backend_environment
from mlip_autopipec.config.run_yaml import RunSpec
from mlip_autopipec.data.export import ExportItem, export_dataset
from mlip_autopipec.data.frames import EnergyReference, LabelledFrame
from mlip_autopipec.files import atomic_path, sha256_file

INTERIM_PATTERN = "interim_potential_*.yaml"


def train(spec: RunSpec, run_dir: Path, progress: ProgressCallback | None) -> dict:
    from mlip_autopipec.backends.pacemaker.export import export_generation
    from mlip_autopipec.backends.pacemaker.trainer import PacemakerTrainer

    config = spec.training_config()
    manifest = _write_dataset(spec, run_dir / DATA_DIR)
    initial = None if spec.task == "train" else _starting_potential(spec, run_dir)
    with backend_environment(spec.backend_env), \
            progress_bar(spec, progress, config.maxiter, "iteration", "pacemaker") as report:
        artifact = PacemakerTrainer.beside(spec.backend_python).train(
            manifest, config, run_dir / GENERATION_DIR, initial_potential=initial, progress=report)
    return trained(spec, artifact, export_generation(artifact.generation_dir, run_dir,
                                                     config=spec.model_dump(mode="json")))


def evaluate(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.validation.errors import predict

    frames = _labelled(split_frames(spec, spec.active_split), spec.active_split)
    calculator, energy_reference = _model(spec)
    predictions = predict(calculator, frames, energy_reference=energy_reference)
    return evaluated(spec, run_dir, predictions.summary())


def infer(spec: RunSpec, run_dir: Path) -> dict:
    """Predicted energy and forces as the frames' calculator results, per-atom γ as an array."""
    split = spec.active_split
    calculator = _model(spec)[0]
    predicted = []
    for atoms in split_frames(spec, split):
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.calc = calculator
        results = {"energy": frame.get_potential_energy()}
        if not spec.eval.energy_only:
            results["forces"] = frame.get_forces()
        gamma = calculator.results.get("gamma")
        if gamma is not None:
            frame.arrays["gamma"] = np.asarray(gamma, dtype=float)
            frame.info["max_gamma"] = float(np.max(gamma))
        frame.calc = SinglePointCalculator(frame, **results)
        predicted.append(frame)
    output = run_dir / "predictions.extxyz"
    with atomic_path(output) as staging:
        ase.io.write(staging, predicted, format="extxyz")
    return {"task": "infer", "split": split, "frames": len(predicted), "predictions": str(output)}


def export(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.backends.pacemaker.export import export_generation

    manifest = export_generation(_generation_of(Path(spec.model_in)), run_dir,
                                 config=spec.model_dump(mode="json"))
    return {"task": "export", "manifest": str(manifest)}


# -- pieces -------------------------------------------------------------------------------------


def _labelled(frames: list[Atoms], split: str) -> list[LabelledFrame]:
    labelled = []
    for index, atoms in enumerate(frames):
        frame = LabelledFrame.from_atoms(atoms)
        if frame.energy is None or not np.isfinite(frame.energy):
            raise DatasetError(f"data.{split}: structure {index} has no energy label")
        if frame.forces is None:
            raise DatasetError(f"data.{split}: structure {index} has no forces label")
        labelled.append(frame)
    return labelled


def _write_dataset(spec: RunSpec, directory: Path):
    """RUN_DIR/data/: data.train as pacemaker's training set, data.test (else data.val) as its test set."""
    test_split = "test" if spec.data.test is not None else "val" if spec.data.val is not None else None
    train = _labelled(split_frames(spec, "train"), "train")
    test = _labelled(split_frames(spec, test_split), test_split) if test_split else []
    items = [ExportItem(frame, f"train-{index}") for index, frame in enumerate(train)] + \
            [ExportItem(frame, f"{test_split}-{index}") for index, frame in enumerate(test)]
    splits = {"train": list(range(len(train))), "test": list(range(len(train), len(items)))}
    source = {"train": str(spec.data.train), "test": str(getattr(spec.data, test_split)) if test_split else None}
    return export_dataset(items, directory, test_fraction=0.0, seed=spec.data.train_indices.seed,
                          formats=["pacemaker", "extxyz"], source=source, splits=splits)


def _generation_of(path: Path) -> Path:
    """The generation directory behind model_in: itself, its artifact.json's folder, RUN_DIR/train,
    or RUN_DIR/artifacts (an export is a loadable generation too)."""
    if path.name == ARTIFACT_NAME:
        return path.parent
    for candidate in (generation_in(path), path / "artifacts"):
        if (candidate / ARTIFACT_NAME).is_file():
            return candidate
    raise DatasetError(f"model_in: {path} is not a Pacemaker generation (no {ARTIFACT_NAME} in it, in "
                       f"{GENERATION_DIR}/ or in artifacts/)")


def _starting_potential(spec: RunSpec, run_dir: Path) -> PotentialArtifact:
    path = Path(spec.model_in)
    if path.suffix == ".yaml":
        return _potential_file_artifact(path, run_dir)
    if spec.task == "resume":
        interim = _latest_interim(path)
        if interim is not None:
            return _potential_file_artifact(interim, run_dir)
    return PotentialArtifact.load(_generation_of(path))


def _latest_interim(path: Path) -> Path | None:
    """The newest interim potential an interrupted fit left in `path`, RUN_DIR/train or its failed attempts."""
    roots = [path, path / GENERATION_DIR] if path.is_dir() else []
    if any((root / ARTIFACT_NAME).is_file() for root in roots):
        return None  # a finished generation: resume from its final potential
    found = [file for root in roots for pattern in (INTERIM_PATTERN, f"failed-attempts/*/{INTERIM_PATTERN}")
             for file in root.glob(pattern)]
    return max(found, key=lambda file: file.stat().st_mtime) if found else None


def _potential_file_artifact(yaml_path: Path, run_dir: Path) -> PotentialArtifact:
    """A bare potential .yaml as a starting artifact (copied into RUN_DIR/start/ so it cannot change)."""
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    try:
        basis = import_pyace().BBasisConfiguration(str(yaml_path))
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"model_in: {yaml_path} is not a Pacemaker potential ({exc})") from exc
    elements = sorted({element for block in basis.funcspecs_blocks for element in block.elements_vec})
    start = run_dir / "start"
    start.mkdir(parents=True, exist_ok=True)
    target = start / "potential.yaml"
    target.write_bytes(yaml_path.read_bytes())
    artifact = PotentialArtifact(backend="pacemaker", elements=elements, files={"potential_yaml": target.name},
                                 digests={"potential_yaml": sha256_file(target)}, version="interim",
                                 dataset_digest="", config_digest="")
    artifact.generation_dir = start
    return artifact


def _model(spec: RunSpec) -> tuple[Calculator, EnergyReference]:
    """The model of an evaluate/infer task (model.manifest, an export, else model_in) and the energy its
    predictions compare with (its fit's energy_corrected)."""
    from mlip_autopipec.backends.pacemaker.export import calculator_from_manifest
    from mlip_autopipec.backends.potentials import load_potential, potential_energy_reference

    if spec.model.manifest is not None:
        manifest = Path(spec.model.manifest)
        return (calculator_from_manifest(manifest),
                potential_energy_reference(manifest if manifest.is_dir() else manifest.parent))
    path = Path(spec.model_in)
    if path.is_dir() and not (path / ARTIFACT_NAME).is_file():
        path = _generation_of(path)
    return load_potential(path)[0], potential_energy_reference(path)
