"""Fixtures for the FairChem backend: the FairChem interpreter (tests marked `fairchem` are skipped,
with the reason, where there is none), a handful of small Cu-I structures, tiny FairChem configs,
and one real EquiformerV2 training shared by the tests that need a trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def fairchem_python() -> Path:
    from mlip_autopipec.backends.base import BackendNotFound
    from mlip_autopipec.backends.fairchem.interpreter import fairchem_entry_point, find_python

    try:
        python = find_python()
        fairchem_entry_point(python)
    except BackendNotFound as exc:
        pytest.skip(f"no FairChem interpreter: {exc}")
    return python


@pytest.fixture(scope="session")
def small_cu_frames(shared_data):
    """Cu-I structures of at most 4 atoms with non-zero forces first: 13 frames, seconds per epoch."""
    import ase.io
    import numpy as np

    frames = [atoms for atoms in ase.io.read(shared_data / "Cu-I.extxyz", index=":") if len(atoms) <= 4]
    frames.sort(key=lambda atoms: -float(np.abs(atoms.get_forces()).max()))
    return frames[:13]


def tiny_native_config(backend: str, epochs: int = 1) -> dict:
    """A FairChem config of the smallest sensible model: one layer, 8 channels."""
    from mlip_autopipec.backends.fairchem.config import FairChemConfig
    from mlip_autopipec.backends.fairchem.native_config import build_native_config

    config = FairChemConfig(backend=backend, epochs=epochs, batch_size=4, channels=8, num_layers=1, lmax=1,
                            cutoff=4.0, max_neighbors=12)
    native = build_native_config(config, {})
    native["dataset"] = {}  # run.yaml's data section fills it
    return native


def write_run_yaml(directory: Path, fairchem_python: Path, frames_file: Path, backend: str, task: str,
                   epochs: int = 1, with_test: bool = False, **extra) -> Path:
    """run.yaml (and its FairChem config) for `task`: 8 training, 3 validation structures, and with
    `with_test` all 13 as the test split (scored after training: one more start of the interpreter)."""
    directory.mkdir(parents=True, exist_ok=True)
    config_yml = directory / f"{backend}-{epochs}.yml"
    config_yml.write_text(yaml.safe_dump(tiny_native_config(backend, epochs), sort_keys=False))
    spec = {"backend": backend, "task": task, "run_dir": str(directory / task), "device": "cpu",
            "backend_python": str(fairchem_python), "backend_env": {"OMP_NUM_THREADS": "1"},
            "data": {"train": str(frames_file), "val": str(frames_file),
                     "train_indices": {"max_samples": 8},
                     "val_indices": {"max_samples": 3, "shuffle": True, "seed": 1}},
            "train": {"config_yml": str(config_yml), "seed": 3, "identifier": "tiny", "progress_bar": False}}
    if with_test:
        spec["data"]["test"] = str(frames_file)
    spec.update(extra)
    path = directory / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def run_yaml_writer():
    """write_run_yaml, for tests that write their own run.yaml."""
    return write_run_yaml


@pytest.fixture(scope="session")
def cu_frames_file(small_cu_frames, tmp_path_factory) -> Path:
    import ase.io

    path = tmp_path_factory.mktemp("fairchem-data") / "cu_small.extxyz"
    ase.io.write(path, small_cu_frames, format="extxyz")
    return path


@dataclass
class TrainedRun:
    run_yaml: Path
    run_dir: Path
    summary: dict
    progress: list


@pytest.fixture(scope="session")
def trained_equiformer_v2(fairchem_python, cu_frames_file, tmp_path_factory) -> TrainedRun:
    """One real EquiformerV2 training through run.yaml (train 8, val 3 structures)."""
    from mlip_autopipec.backends.run_yaml import run_task
    from mlip_autopipec.config.run_yaml import load_run_spec

    directory = tmp_path_factory.mktemp("fairchem-eqv2")
    run_yaml = write_run_yaml(directory, fairchem_python, cu_frames_file, "equiformer_v2", "train")
    spec = load_run_spec(run_yaml)
    progress: list = []
    summary = run_task(spec, progress=progress.append)
    return TrainedRun(run_yaml, Path(spec.run_dir), summary, progress)
