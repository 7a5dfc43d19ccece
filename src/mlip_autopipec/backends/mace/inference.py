"""Evaluate and infer with trained MACE models, batched the way `mace_eval_configs` does it.

    evaluate(models, "test.extxyz")              -> RMSE/MAE of energy per atom and forces (meV)
    evaluate(models, "test.extxyz", energy_only=True)   forces are neither computed nor scored
    infer(models, "in.extxyz", "out.extxyz")     -> predictions written as MACE_energy / MACE_forces

`models` is anything `resolve_model_files` understands: a generation directory (its artifact.json),
an export manifest.json, a `.model` file, or a list of `.model` files (a committee: predictions are
the committee mean, and infer also writes each frame's deviations, DP-GEN style).

Reference labels are read from `REF_energy` / `REF_forces` (MACE's keys, what our exporter writes)
or, failing that, from ASE's standard `energy=` / forces properties; `energy_key` / `forces_key`
name other keys. Errors name the file, the frame and the missing field.
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
DEFAULT_PREFIX = "MACE_"  # mace_eval_configs' --info_prefix default


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
            batch_size: int = 16, device: str = "auto", amp: bool = False, head: str | None = None
            ) -> Predictions:
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
        head_name = head or ("Default" if "Default" in heads else heads[-1])
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


def evaluate(models: ModelSource | list, data: str | os.PathLike, energy_only: bool = False,
             batch_size: int = 16, device: str = "auto", amp: bool = False,
             energy_key: str | None = None, forces_key: str | None = None) -> Evaluation:
    """RMSE and MAE of energy per atom (meV/atom) and force components (meV/Angstrom) on `data`."""
    return evaluate_frames(models, read_frames(data), energy_only, batch_size, device, amp, energy_key,
                           forces_key, source=str(data))


def evaluate_frames(models: ModelSource | list, frames: Sequence[Atoms], energy_only: bool = False,
                    batch_size: int = 16, device: str = "auto", amp: bool = False,
                    energy_key: str | None = None, forces_key: str | None = None,
                    source: str = "frames") -> Evaluation:
    """`evaluate` on structures already in memory (e.g. read from an ASE LMDB)."""
    energy_reference, forces_reference = read_reference(frames, energy_key, forces_key, energy_only, source)
    predictions = predict(models, frames, energy_only=energy_only, batch_size=batch_size, device=device, amp=amp)
    force_error = None if energy_only else np.concatenate([
        (predictions.frame_forces(i) - forces_reference[i]).reshape(-1) for i in range(len(frames))])
    metrics = {**error_metrics((predictions.energy - energy_reference) / predictions.n_atoms, force_error),
               "atoms": float(predictions.n_atoms.sum()), "models": float(predictions.energies.shape[0])}
    if not energy_only:
        if predictions.energies.shape[0] > 1:
            deviations = [committee_deviations(predictions.forces[i], predictions.energies[:, i], len(frames[i]))
                          for i in range(len(frames))]
            metrics["max_force_std_mev_per_angstrom"] = 1e3 * max(d["max_force_std"] for d in deviations)
    return Evaluation(metrics, predictions, energy_reference, forces_reference)


def infer(models: ModelSource | list, data: str | os.PathLike, output: str | os.PathLike,
          energy_only: bool = False, batch_size: int = 16, device: str = "auto", amp: bool = False,
          prefix: str = DEFAULT_PREFIX) -> Path:
    """Write `data`'s frames with predictions: info[PREFIX+'energy'], arrays[PREFIX+'forces'] (committee
    mean), and for a committee info[PREFIX+'energy_std'], info[PREFIX+'max_force_std'],
    arrays[PREFIX+'forces_std']. Labels already in the file are kept as they were."""
    return infer_frames(models, read_frames(data), output, energy_only, batch_size, device, amp, prefix)


def infer_frames(models: ModelSource | list, frames: Sequence[Atoms], output: str | os.PathLike,
                 energy_only: bool = False, batch_size: int = 16, device: str = "auto", amp: bool = False,
                 prefix: str = DEFAULT_PREFIX) -> Path:
    """`infer` on structures already in memory; writes extxyz to `output`."""
    import ase.io

    from mlip_autopipec.files import atomic_path

    frames = list(frames)
    predictions = predict(models, frames, energy_only=energy_only, batch_size=batch_size, device=device, amp=amp)
    committee = predictions.energies.shape[0] > 1
    for index, atoms in enumerate(frames):
        atoms.info[prefix + "energy"] = float(predictions.energy[index])
        if committee:
            atoms.info[prefix + "energy_std"] = float(np.std(predictions.energies[:, index]))
        if not energy_only:
            atoms.arrays[prefix + "forces"] = predictions.frame_forces(index)
            if committee:
                deviations = committee_deviations(predictions.forces[index], predictions.energies[:, index],
                                                  len(atoms))
                atoms.arrays[prefix + "forces_std"] = deviations["forces_std"]
                atoms.info[prefix + "max_force_std"] = deviations["max_force_std"]
    output = Path(output)
    with atomic_path(output) as temporary:
        ase.io.write(temporary, frames, format="extxyz")
    return output


# -- helpers ------------------------------------------------------------------------------------


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

