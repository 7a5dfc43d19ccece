"""The run.yaml runner of the MACE backend (see backends/run_yaml.py).

    train     data.train (+ data.val, data.test) -> RUN_DIR/train/ + RUN_DIR/artifacts/
    finetune  from model_in (a .model file, a generation or run directory) or model.manifest (+ model.weights)
    resume    from model_in (a checkpoint .pt, or a directory with checkpoints/) or model.weights, up to
              train.epochs
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact, ProgressCallback
from mlip_autopipec.backends import run_yaml as shared
from mlip_autopipec.backends.runner import backend_environment
from mlip_autopipec.config.run_yaml import RunSpec


def train(spec: RunSpec, run_dir: Path, progress: ProgressCallback | None) -> dict:
    from mlip_autopipec.backends.mace.export import export_model
    from mlip_autopipec.backends.mace.trainer import MaceTrainer

    config = _task_config(spec)
    manifest, valid_file = shared.write_splits(spec, run_dir / shared.DATA_DIR, _as_mace_frame, "{split}_mace.extxyz",
                                               "mace")
    initial, foundation, resume_from = _starting_point(spec, run_dir)
    with backend_environment(spec.backend_env), \
            shared.progress_bar(spec, progress, config.epochs, "epoch", "mace") as report:
        artifact = MaceTrainer.beside(spec.backend_python).train(
            manifest, config, run_dir / shared.GENERATION_DIR, initial_potential=initial, progress=report,
            foundation_model=foundation, resume_from=resume_from, valid_file=valid_file)
    return shared.trained(spec, artifact, export_model(artifact.generation_dir, run_dir,
                                                       config=spec.model_dump(mode="json")))


def evaluate(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.backends.mace.inference import evaluate

    split = spec.active_split
    evaluation = evaluate(_models(spec), shared.split_frames(spec, split), energy_only=spec.eval.energy_only,
                          device=spec.resolved_device(), amp=spec.eval.amp, source=str(getattr(spec.data, split)))
    return shared.evaluated(spec, run_dir, evaluation.metrics)


def infer(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.backends.mace.inference import infer

    split = spec.active_split
    frames = shared.split_frames(spec, split)
    output = infer(_models(spec), frames, run_dir / "predictions.extxyz", energy_only=spec.eval.energy_only,
                   device=spec.resolved_device(), amp=spec.eval.amp)
    return {"task": "infer", "split": split, "frames": len(frames), "predictions": str(output)}


def export(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.backends.mace.export import export_model

    source = shared.generation_in(Path(spec.model_in))
    manifest_path = export_model(source, run_dir, config=spec.model_dump(mode="json"))
    return {"task": "export", "manifest": str(manifest_path)}


# -- pieces -------------------------------------------------------------------------------------


def _task_config(spec: RunSpec):
    """MaceConfig of the task. Without train.input_json, fine-tuning takes the architecture from its
    starting model, and resuming takes the whole config of the run it continues (its
    mace_config.json), so the checkpoint fits; the train knobs (e.g. more epochs) apply on top."""
    from mlip_autopipec.backends.mace.config import MaceConfig
    from mlip_autopipec.config.run_files import ConfigError

    if spec.train.input_json is not None or spec.task == "train":
        return spec.training_config()
    base: dict = {}
    if spec.task == "resume":
        source = _resume_path(spec)
        candidates = [source / "mace_config.json"] if source.is_dir() else \
            [source.parent / "mace_config.json", source.parent.parent / "mace_config.json"]
        record = next((path for path in candidates if path.is_file()), None)
        if record is None:
            raise ConfigError(f"train.input_json: needed to resume from {source}, which does not say which "
                              "model it trained (no mace_config.json beside it)")
        base = json.loads(record.read_text())["config"]
    overrides = spec.training_config().model_dump(mode="json", exclude_unset=True)
    return MaceConfig.model_validate({**base, **overrides})


def _resume_path(spec: RunSpec) -> Path:
    return shared.generation_in(Path(spec.model_in) if spec.model_in is not None else Path(spec.model.weights))


def _starting_point(spec: RunSpec, run_dir: Path):
    """(initial_potential, foundation_model, resume_from) for the task."""
    if spec.task == "train":
        return None, None, None
    if spec.task == "resume":
        return None, None, _resume_path(spec)
    # finetune
    if spec.model.manifest is not None:
        from mlip_autopipec.backends.mace.export import load_exported_models

        import torch

        model = load_exported_models(spec.model.manifest, spec.model.weights)[0]
        start = run_dir / "start.model"
        torch.save(model, start)
        return None, start, None
    source = shared.generation_in(Path(spec.model_in))
    if source.is_dir() or source.name == ARTIFACT_NAME:
        return PotentialArtifact.load(source), None, None
    return None, source, None


def _models(spec: RunSpec):
    """Model files, or loaded models when model.weights replaces the manifest's weights."""
    if spec.model.manifest is not None:
        from mlip_autopipec.backends.mace.export import load_exported_models

        if spec.model.weights is not None:
            return load_exported_models(spec.model.manifest, spec.model.weights, spec.resolved_device())
        return spec.model.manifest
    source = shared.generation_in(Path(spec.model_in))
    if source.is_dir() and not (source / ARTIFACT_NAME).exists() and (source / "artifacts" / "manifest.json").exists():
        return source / "artifacts" / "manifest.json"
    return source


def _as_mace_frame(atoms: Atoms, split: str, index: int) -> Atoms:
    """Geometry plus REF_energy / REF_forces (from REF_ keys or the calculator's results)."""
    energy, forces, stress = shared.reference_labels(atoms, split, index)
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info["REF_energy"] = energy
    frame.arrays["REF_forces"] = np.asarray(forces, dtype=float)
    if stress is not None:
        frame.info["REF_stress"] = np.asarray(stress, dtype=float).reshape(-1)
    return frame
