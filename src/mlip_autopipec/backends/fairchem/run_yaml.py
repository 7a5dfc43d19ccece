"""The run.yaml runner of the FairChem backends (equiformer_v2 | gemnet_oc; see backends/run_yaml.py).

    train     train.config_yml (FairChem's own config) on data.train (+ val, test)
    finetune  from model_in (a checkpoint .pt, a generation or run directory, an export manifest) or
              model.manifest: its weights, a fresh optimizer, step 0
    resume    model_in / model.weights (a checkpoint or a run / generation directory) with its optimizer
              and step, up to the config's max_epochs

Everything runs in `backend_python` (else $MLIP_FAIRCHEM_PYTHON, else .venv-fairchem), with `backend_env`
set and `backend_args` appended to the `fairchem` command line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ase import Atoms

from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact, ProgressCallback
from mlip_autopipec.backends.fairchem.config import FairChemConfig
from mlip_autopipec.backends.fairchem.interpreter import find_python
from mlip_autopipec.backends import run_yaml as shared
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.config.run_yaml import RunSpec


def export(spec: RunSpec, run_dir: Path) -> dict:
    from mlip_autopipec.backends.fairchem.export import export_checkpoint

    manifest = export_checkpoint(spec.model_in, run_dir, find_python(spec.backend_python), spec.backend,
                                 config=spec.model_dump(mode="json"), env=spec.backend_env)
    return {"task": "export", "manifest": str(manifest)}


def train(spec: RunSpec, run_dir: Path, progress: ProgressCallback | None) -> dict:
    from mlip_autopipec.backends.fairchem.export import checkpoint_of, export_checkpoint
    from mlip_autopipec.backends.fairchem.native_config import load_native_config
    from mlip_autopipec.backends.fairchem.trainer import FairChemTrainer

    python = find_python(spec.backend_python)
    if spec.data.train is None:
        raise ConfigError("data.train: required for FairChem training here: the config's dataset section is "
                          "replaced by the ASE LMDB files written from data.train / val / test")
    native = load_native_config(spec.train.config_yml)
    config = FairChemConfig(backend=spec.backend, seed=spec.train.seed if spec.train.seed is not None else 0,
                            device=_device(spec), epochs=(native.get("optim") or {}).get("max_epochs", 1),
                            extra_args=list(spec.backend_args))
    manifest, valid_file = shared.write_splits(spec, run_dir / shared.DATA_DIR, _labelled, "{split}.extxyz", "extxyz")
    start: dict = {}
    if spec.task == "finetune":
        source = spec.model_in if spec.model_in is not None else spec.model.manifest
        if _is_generation(Path(source)):
            start["initial_potential"] = PotentialArtifact.load(shared.generation_in(Path(source)))
        else:
            start["start_checkpoint"] = checkpoint_of(source)
    elif spec.task == "resume":
        source = spec.model_in if spec.model_in is not None else spec.model.weights
        start["resume_from"] = shared.generation_in(Path(source))
    trainer = FairChemTrainer(python=python, env=spec.backend_env)
    with shared.progress_bar(spec, progress, 100, "%", spec.backend) as report:
        artifact = trainer.train(manifest, config, run_dir / shared.GENERATION_DIR, progress=report,
                                 native_config=native, identifier=spec.train.identifier, valid_file=valid_file,
                                 **start)
    exported = export_checkpoint(artifact.generation_dir, run_dir, python, spec.backend,
                                 config=spec.model_dump(mode="json"), env=spec.backend_env)
    return shared.trained(spec, artifact, exported)


def evaluate(spec: RunSpec, run_dir: Path) -> dict:
    """evaluate, or infer (the same model and frames)."""
    from mlip_autopipec.backends.fairchem.export import checkpoint_of
    from mlip_autopipec.backends.fairchem.inference import evaluate_frames, infer_frames

    python = find_python(spec.backend_python)
    checkpoint = checkpoint_of(spec.model_in if spec.model_in is not None else spec.model.manifest)
    split = spec.active_split
    frames = shared.split_frames(spec, split)
    options = {"energy_only": spec.eval.energy_only, "cpu": _device(spec) == "cpu", "env": spec.backend_env}
    log_path = run_dir / "fairchem_worker.log"
    if spec.eval.amp:
        warnings.warn("eval.amp is not applied by the FairChem backend (OCPCalculator predicts in float32)",
                      RuntimeWarning, stacklevel=2)
    if spec.task == "infer":
        output = infer_frames(python, checkpoint, frames, run_dir / "predictions.extxyz", log_path, **options)
        return {"task": "infer", "split": split, "frames": len(frames), "predictions": str(output)}
    metrics = evaluate_frames(python, checkpoint, frames, run_dir / "eval_predictions.extxyz", log_path,
                              source=str(getattr(spec.data, split)), **options)
    return shared.evaluated(spec, run_dir, metrics, checkpoint=str(checkpoint))


infer = evaluate


def _device(spec: RunSpec) -> str:
    from mlip_autopipec.backends.runner import resolve_device

    return resolve_device(spec.device, other_interpreter=True)


def _is_generation(path: Path) -> bool:
    generation = shared.generation_in(path)
    return generation.is_dir() and (generation / ARTIFACT_NAME).is_file() or path.name == ARTIFACT_NAME


def _labelled(atoms: Atoms, split: str, index: int) -> Atoms:
    """Geometry plus energy and forces as calculator results (from REF_ keys or the results)."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    energy, forces, _ = shared.reference_labels(atoms, split, index)
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=np.asarray(forces, dtype=float))
    return frame
