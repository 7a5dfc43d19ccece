"""`run_task(spec)`: one run.yaml task, run by its backend's runner (backends/<backend>/run_yaml.py), and
what those runners share. Every runner's tasks:

    train / finetune / resume   the sampled data -> RUN_DIR/data/ (with a DatasetManifest, so a training
                                is traceable to the structures it saw) -> RUN_DIR/train/ (a generation)
                                -> RUN_DIR/artifacts/ (the export)
    evaluate    RMSE/MAE on the active split (data.test, else val, else train) -> RUN_DIR/eval_metrics.json
    infer       predictions on the active split -> RUN_DIR/predictions.extxyz
    export      model_in -> RUN_DIR/artifacts/ (model files and manifest.json)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms

from mlip_autopipec.backends import TRAINERS
from mlip_autopipec.backends.base import ARTIFACT_NAME, DatasetError, PotentialArtifact, ProgressCallback
from mlip_autopipec.config.run_yaml import TRAINING_TASKS, RunSpec
from mlip_autopipec.data.manifest import DatasetManifest, ManifestFile
from mlip_autopipec.files import atomic_write_text, sha256_file

GENERATION_DIR = "train"  # RUN_DIR/train: the generation a training task writes
DATA_DIR = "data"  # RUN_DIR/data: the sampled structures it trained on, with their manifest
# Backend name -> the module of its run.yaml runner, beside its trainer; loaded lazily (TensorFlow, torch).
RUNNERS = {name: trainer.split(":")[0] + ".run_yaml" for name, trainer in TRAINERS.items()}


def run_task(spec: RunSpec, progress: ProgressCallback | None = None) -> dict:
    """Run `spec` with its backend; the summary names every output (run_dir, artifacts, metrics)."""
    if spec.backend not in RUNNERS:
        raise NotImplementedError(f"backend {spec.backend!r} has no run.yaml task runner here "
                                  f"(available: {sorted(RUNNERS)})")
    runner = importlib.import_module(RUNNERS[spec.backend])
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.task in TRAINING_TASKS:
        return runner.train(spec, run_dir, progress)
    return getattr(runner, spec.task)(spec, run_dir)


def generation_in(path: Path) -> Path:
    """A run directory's generation (RUN_DIR/train) when given the run directory itself, else `path`."""
    if path.is_dir() and not (path / ARTIFACT_NAME).exists() and (path / GENERATION_DIR).is_dir():
        return path / GENERATION_DIR
    return path


def reference_labels(atoms: Atoms, split: str, index: int) -> tuple[float, object, object]:
    """(energy, forces, stress or None) of a labelled frame: REF_ keys, else its calculator's results."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    energy = atoms.info.get("REF_energy", results.get("energy", results.get("free_energy")))
    forces = atoms.arrays.get("REF_forces", results.get("forces"))
    if energy is None:
        raise DatasetError(f"data.{split}: structure {index} has no energy (REF_energy or energy)")
    if forces is None:
        raise DatasetError(f"data.{split}: structure {index} has no forces (REF_forces or forces)")
    return float(energy), forces, atoms.info.get("REF_stress", results.get("stress"))


def read_reference(frames: list[Atoms], energy_only: bool = False, source: str = "frames",
                   energy_only_option: str = "energy_only") -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Reference energies (and forces) of `frames` for scoring a model: REF_energy / REF_forces, else
    the calculator's results; errors name `source`, the frame and the field."""
    energies, forces = [], []
    for index, atoms in enumerate(frames):
        energies.append(float(_reference(atoms, atoms.info, "energy", f"{source}: frame {index}")))
        if not energy_only:
            forces.append(np.asarray(_reference(atoms, atoms.arrays, "forces", f"{source}: frame {index}",
                                                f"; use {energy_only_option} to score energies alone"), dtype=float))
    return np.array(energies, dtype=float), None if energy_only else forces


def _reference(atoms: Atoms, stored: dict, quantity: str, where: str, hint: str = ""):
    if f"REF_{quantity}" in stored:
        return stored[f"REF_{quantity}"]
    if atoms.calc is not None and quantity in atoms.calc.results:
        return atoms.calc.results[quantity]
    raise ValueError(f"{where} has no reference {quantity} (looked for REF_{quantity} or {quantity}){hint}")


def trained(spec: RunSpec, artifact: PotentialArtifact, manifest: Path | None) -> dict:
    """The summary of a training task."""
    return {"task": spec.task, "generation_dir": str(artifact.generation_dir),
            "artifact": str(artifact.generation_dir / ARTIFACT_NAME),
            "manifest": None if manifest is None else str(manifest), "metrics": artifact.metrics}


def evaluated(spec: RunSpec, run_dir: Path, metrics: dict, **extra) -> dict:
    """RUN_DIR/eval_metrics.json and the summary of an evaluate task."""
    split = spec.active_split
    if spec.eval.energy_only:
        metrics = {key: value for key, value in metrics.items() if not key.startswith("forces_")}
    result = {"task": "evaluate", "split": split, "data": str(getattr(spec.data, split)),
              "energy_only": spec.eval.energy_only, **extra, "metrics": metrics}
    target = atomic_write_text(run_dir / "eval_metrics.json", json.dumps(result, indent=1) + "\n")
    return {**result, "metrics_json": str(target)}


def read_frames(path: str | os.PathLike, where: str = "") -> list[Atoms]:
    """Every structure in `path`: extxyz (or any ASE format), an ASE LMDB file or a shard directory.
    `where` (e.g. "data.train: ") starts the error messages."""
    from mlip_autopipec.data.ase_lmdb import is_lmdb_path, read_ase_lmdb

    path = Path(path)
    if is_lmdb_path(path):
        frames = list(read_ase_lmdb(path))
    else:
        import ase.io

        if not path.exists():
            raise FileNotFoundError(f"{where}{path}: no such structure file")
        try:
            frames = ase.io.read(path, index=":")
        except Exception as exc:
            raise DatasetError(f"{where}cannot read {path} ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise DatasetError(f"{where}{path} holds no structures")
    return frames


def split_frames(spec: RunSpec, split: str) -> list[Atoms]:
    """data.<split> read, then its explicit indices, else its sampling (shuffle with its seed, then max_samples)."""
    frames = read_frames(getattr(spec.data, split), f"data.{split}: ")
    indices = spec.indices_for(split)
    if indices is not None:
        bad = [index for index in indices if index >= len(frames)]
        if bad:
            raise DatasetError(f"data.{split} ({getattr(spec.data, split)}) has {len(frames)} structures; "
                               f"indices {bad[:5]} are out of range")
        return [frames[index] for index in indices]
    sampling = spec.sampling_for(split)
    order = list(range(len(frames)))
    if sampling is not None and sampling.shuffle:
        random.Random(sampling.seed).shuffle(order)
    if sampling is not None and sampling.max_samples is not None:
        order = order[:sampling.max_samples]
    return [frames[index] for index in order]


@contextlib.contextmanager
def progress_bar(spec: RunSpec, progress: ProgressCallback | None, total: int, unit: str, description: str):
    """train.progress_bar (auto: when stderr is a terminal) as a tqdm bar over `total` units, plus `progress`."""
    show = spec.train.progress_bar if spec.train.progress_bar != "auto" else sys.stderr.isatty()
    bar = None
    if show:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=unit, mininterval=spec.train.progress_mininterval, desc=description)
        except ImportError:
            bar = None

    def report(event):
        if bar is not None:
            bar.n = min(event.iteration, total)
            bar.set_postfix_str(event.message[:60], refresh=True)
        if progress is not None:
            progress(event)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()


def write_splits(spec: RunSpec, directory: Path, frame: Callable[[Atoms, str, int], Atoms], name: str,
                 data_format: str) -> tuple[DatasetManifest, Path | None]:
    """data.train / val / test sampled, each frame made by `frame(atoms, split, index)`, as extxyz
    files named `name` (with {split}) in `directory`, and a DatasetManifest of the train and test
    splits there; val is returned as the validation file."""
    import ase.io

    directory.mkdir(parents=True, exist_ok=True)
    entries, counts, elements, valid_file = [], {}, set(), None
    for split in ("train", "val", "test"):
        if getattr(spec.data, split) is None:
            continue
        frames = [frame(atoms, split, index) for index, atoms in enumerate(split_frames(spec, split))]
        path = directory / name.format(split=split)
        ase.io.write(path, frames, format="extxyz")
        elements.update(symbol for atoms in frames for symbol in atoms.get_chemical_symbols())
        if split == "val":
            valid_file = path
            continue
        counts[split] = len(frames)
        entries.append(ManifestFile(path=path.name, format=data_format, split=split, frames=len(frames),
                                    atoms=sum(len(atoms) for atoms in frames), sha256=sha256_file(path)))
    source = {split: str(getattr(spec.data, split)) if getattr(spec.data, split) else None
              for split in ("train", "val", "test")}
    manifest = DatasetManifest(seed=spec.data.train_indices.seed, test_fraction=0.0, elements=sorted(elements),
                               counts=counts, files=entries, source=source).finalize()
    manifest.write(directory)
    return manifest, valid_file
