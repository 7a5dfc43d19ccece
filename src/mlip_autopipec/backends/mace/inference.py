"""Evaluate and infer with trained MACE models, batched the way `mace_eval_configs` does it.

`models` is anything `resolve_model_files` understands: a generation directory, an export
manifest.json, a `.model` file, or a list of them (a committee: predictions are the committee mean,
and infer also writes each frame's deviations, DP-GEN style). `data` is a structure file or frames
in memory; reference labels are REF_energy / REF_forces, else the frames' calculator results.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from mlip_autopipec.backends.mace.calculator import committee_deviations, load_models
from mlip_autopipec.backends.run_yaml import read_frames, read_reference
from mlip_autopipec.backends.runner import resolve_device
from mlip_autopipec.validation.errors import error_metrics

ModelSource = str | os.PathLike | Sequence[str | os.PathLike]
PREFIX = "MACE_"  # mace_eval_configs' --info_prefix default


@dataclass
class Predictions:
    """Per model and frame, in eV and eV/Angstrom."""

    energies: np.ndarray  # (models, frames)
    forces: list[np.ndarray] | None  # per frame (models, atoms, 3); None when energy_only
    n_atoms: np.ndarray  # (frames,)

    @property
    def energy(self) -> np.ndarray:  # committee mean
        return self.energies.mean(axis=0)

    def frame_forces(self, index: int) -> np.ndarray:
        return self.forces[index].mean(axis=0)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: Predictions
    energy_reference: np.ndarray
    forces_reference: list[np.ndarray] | None


def resolve_model_files(models: ModelSource) -> list[Path]:
    """Model files of a generation directory / artifact.json / export manifest.json / .model path(s)."""
    if isinstance(models, (str, os.PathLike)):
        path = Path(models)
        if path.is_dir() or path.name == "artifact.json":
            from mlip_autopipec.backends.base import PotentialArtifact
            from mlip_autopipec.backends.mace.calculator import model_paths_of

            artifact = PotentialArtifact.load(path)
            if artifact.backend != "mace":
                raise ValueError(f"{path}: a {artifact.backend} potential, not a MACE model")
            return model_paths_of(artifact)
        if path.suffix == ".json":
            from mlip_autopipec.backends.mace.export import ExportManifest

            return ExportManifest.load(path).model_files()
        return [path]
    files = [Path(item) for item in models]
    if not files:
        raise ValueError("no MACE model files given")
    return files


def predict(models: ModelSource | list, frames: Sequence[Atoms], energy_only: bool = False,
            batch_size: int = 16, device: str = "auto", amp: bool = False) -> Predictions:
    """Energies (and forces) of every frame from every model, in batches of `batch_size` frames."""
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools, utils

    if not frames:
        raise ValueError("no structures to predict")
    device = resolve_device(device)
    loaded = models if _are_modules(models) else load_models(resolve_model_files(models), device)
    autocast = _autocast(amp, device)
    energies, forces = [], []
    for model in loaded:
        for parameter in model.parameters():
            parameter.requires_grad = False
        dtype = next(model.parameters()).dtype
        z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
        heads = getattr(model, "heads", None) or ["Default"]
        head_name = "Default" if "Default" in heads else heads[-1]
        _check_elements(frames, z_table.zs)
        with torch_tools.default_dtype("float64" if dtype == torch.float64 else "float32"):
            dataset = [mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(atoms, head_name=head_name), z_table=z_table,
                cutoff=float(model.r_max), heads=heads) for atoms in frames]
        loader = torch_geometric.dataloader.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                       drop_last=False)
        model_energies, model_forces = [], []
        for batch in loader:
            batch = batch.to(device)
            batch_dict = {key: (value.to(dtype) if torch.is_tensor(value) and torch.is_floating_point(value)
                                else value) for key, value in batch.to_dict().items()}
            grad_context = torch.no_grad() if energy_only else contextlib.nullcontext()
            with grad_context, autocast:
                output = model(batch_dict, compute_force=not energy_only, training=False)
            model_energies.append(output["energy"].detach().cpu().numpy().astype(float))
            if not energy_only:
                split = np.split(output["forces"].detach().cpu().numpy().astype(float),
                                 batch.ptr[1:].cpu().numpy(), axis=0)[:-1]
                model_forces.extend(split)
        energies.append(np.concatenate(model_energies))
        forces.append(model_forces)
    per_frame_forces = None
    if not energy_only:
        per_frame_forces = [np.stack([forces[m][i] for m in range(len(loaded))]) for i in range(len(frames))]
    return Predictions(energies=np.stack(energies), forces=per_frame_forces,
                       n_atoms=np.array([len(atoms) for atoms in frames], dtype=float))


def evaluate(models: ModelSource | list, data: str | os.PathLike | Sequence[Atoms], energy_only: bool = False,
             batch_size: int = 16, device: str = "auto", amp: bool = False, source: str | None = None) -> Evaluation:
    """RMSE and MAE of energy per atom (meV/atom) and force components (meV/Angstrom) on `data`
    (errors name `source`, by default the file)."""
    frames = _frames(data)
    source = source or (str(data) if isinstance(data, (str, os.PathLike)) else "frames")
    energy_reference, forces_reference = read_reference(frames, energy_only, source)
    predictions = predict(models, frames, energy_only=energy_only, batch_size=batch_size, device=device, amp=amp)
    force_error = None if energy_only else np.concatenate([
        (predictions.frame_forces(i) - forces_reference[i]).reshape(-1) for i in range(len(frames))])
    metrics = {**error_metrics((predictions.energy - energy_reference) / predictions.n_atoms, force_error),
               "atoms": float(predictions.n_atoms.sum()), "models": float(predictions.energies.shape[0])}
    if not energy_only and predictions.energies.shape[0] > 1:
        deviations = [committee_deviations(predictions.forces[i], predictions.energies[:, i], len(frames[i]))
                      for i in range(len(frames))]
        metrics["max_force_std_mev_per_angstrom"] = 1e3 * max(d["max_force_std"] for d in deviations)
    return Evaluation(metrics, predictions, energy_reference, forces_reference)


def infer(models: ModelSource | list, data: str | os.PathLike | Sequence[Atoms], output: str | os.PathLike,
          energy_only: bool = False, batch_size: int = 16, device: str = "auto", amp: bool = False) -> Path:
    """Write `data`'s frames to `output` (extxyz) with MACE_energy (info) and MACE_forces (arrays), the
    committee mean, and for a committee MACE_energy_std, MACE_max_force_std and MACE_forces_std.
    Labels already in the frames are kept."""
    import ase.io

    from mlip_autopipec.files import atomic_path

    frames = _frames(data)
    predictions = predict(models, frames, energy_only=energy_only, batch_size=batch_size, device=device, amp=amp)
    committee = predictions.energies.shape[0] > 1
    for index, atoms in enumerate(frames):
        atoms.info[PREFIX + "energy"] = float(predictions.energy[index])
        if committee:
            atoms.info[PREFIX + "energy_std"] = float(np.std(predictions.energies[:, index]))
        if not energy_only:
            atoms.arrays[PREFIX + "forces"] = predictions.frame_forces(index)
            if committee:
                deviations = committee_deviations(predictions.forces[index], predictions.energies[:, index],
                                                  len(atoms))
                atoms.arrays[PREFIX + "forces_std"] = deviations["forces_std"]
                atoms.info[PREFIX + "max_force_std"] = deviations["max_force_std"]
    output = Path(output)
    with atomic_path(output) as temporary:
        ase.io.write(temporary, frames, format="extxyz")
    return output


def _frames(data: str | os.PathLike | Sequence[Atoms]) -> list[Atoms]:
    return read_frames(data) if isinstance(data, (str, os.PathLike)) else list(data)


def _check_elements(frames: Sequence[Atoms], model_numbers: Sequence[int]) -> None:
    known = set(int(z) for z in model_numbers)
    for index, atoms in enumerate(frames):
        unknown = sorted(set(int(z) for z in atoms.numbers) - known)
        if unknown:
            from ase.data import chemical_symbols

            raise ValueError(f"frame {index} contains {[chemical_symbols[z] for z in unknown]}, which the "
                             f"model does not know (elements {[chemical_symbols[z] for z in sorted(known)]})")


def _are_modules(models) -> bool:
    if isinstance(models, (str, os.PathLike)):
        return False
    items = list(models)
    return bool(items) and all(hasattr(item, "parameters") for item in items)


def _autocast(amp: bool, device: str):
    if not amp:
        return contextlib.nullcontext()
    if device != "cuda":
        warnings.warn("amp (autocast) works on CUDA only; evaluating without it on the CPU",
                      RuntimeWarning, stacklevel=3)
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda")

