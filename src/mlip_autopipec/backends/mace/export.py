"""Export a trained MACE model as RUN_DIR/artifacts/: model.model (the pickled module),
model_compiled.model (TorchScript, when it compiles), weights.pt (the state_dict), committee_K.model,
manifest.json. `calculator_from_manifest` loads it back; `weights=` swaps in another state_dict or a
training checkpoint of the same architecture (run.yaml's `model.manifest` + `model.weights`).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

from ase.calculators.calculator import Calculator
from pydantic import Field

from mlip_autopipec.backends import export as shared
from mlip_autopipec.files import atomic_path

MODEL_FILE = "model.model"
COMPILED_FILE = "model_compiled.model"
WEIGHTS_FILE = "weights.pt"


class ExportManifest(shared.BaseExportManifest):
    backend: str = "mace"
    model: shared.ExportedFile
    compiled_model: shared.ExportedFile | None = None
    weights: shared.ExportedFile
    committee: list[shared.ExportedFile] = Field(default_factory=list)
    elements: list[str]
    r_max: float
    default_dtype: str
    heads: list[str]
    versions: dict[str, str]

    def model_files(self) -> list[Path]:
        return [self.path(self.model)] + [self.path(member) for member in self.committee]


def export_model(model_in: str | os.PathLike, run_dir: str | os.PathLike, config: dict | None = None) -> Path:
    """Write RUN_DIR/artifacts/ from `model_in` (a generation directory, its artifact.json, or a .model
    file); return the manifest's path. The artifacts directory is replaced as a whole."""
    import torch

    from mlip_autopipec.backends.mace.calculator import _import_torch_and_mace, _model_dtype, load_models

    _import_torch_and_mace()
    source = Path(model_in)
    model_files, compiled_source, artifact = _export_sources(source)
    models = load_models(model_files, "cpu")
    main = models[0]

    with shared.staged_export(run_dir) as staging:
        shutil.copyfile(model_files[0], staging / MODEL_FILE)
        torch.save(main.state_dict(), staging / WEIGHTS_FILE)
        compiled = _compiled(main, compiled_source, staging / COMPILED_FILE)
        committee = []
        for index, path in enumerate(model_files[1:], start=1):
            name = f"committee_{index}.model"
            shutil.copyfile(path, staging / name)
            committee.append(shared.exported(staging, name))
        recorded_config = dict(config or {})
        if not recorded_config and artifact is not None and "config_json" in artifact.files:
            recorded_config = json.loads(artifact.path("config_json").read_text()).get("config", {})
        ExportManifest(
            source=str(source.resolve()),
            model=shared.exported(staging, MODEL_FILE),
            compiled_model=shared.exported(staging, COMPILED_FILE) if compiled else None,
            weights=shared.exported(staging, WEIGHTS_FILE),
            committee=committee,
            elements=_elements(main),
            r_max=float(main.r_max),
            default_dtype=_model_dtype(main),
            heads=list(getattr(main, "heads", None) or ["Default"]),
            versions=_versions(),
            config=recorded_config,
            metrics=dict(artifact.metrics) if artifact is not None else {},
            dataset_digest=artifact.dataset_digest if artifact is not None else None,
        ).write(staging)
    return Path(run_dir) / shared.ARTIFACTS_DIR / shared.MANIFEST_NAME


def load_exported_models(manifest_path: str | os.PathLike, weights: str | os.PathLike | None = None,
                         device: str = "cpu") -> list:
    """The manifest's models; `weights` (a state_dict or MACE checkpoint) replaces the first one's weights."""
    import torch

    from mlip_autopipec.backends.mace.calculator import load_models

    manifest = ExportManifest.load(manifest_path)
    manifest.verify()
    models = load_models(manifest.model_files(), device)
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None:
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path}: weights file does not exist")
        try:  # tensors only: a weights file or checkpoint never runs code when it is read
            state = torch.load(weights_path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{weights_path}: not a plain weights file or checkpoint (refused to unpickle "
                             f"anything but tensors and containers: {str(exc).splitlines()[-1][:300]})") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # a mace_run_train checkpoint: model, optimizer, lr_scheduler
        try:
            models[0].load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ValueError(f"{weights_path}: weights do not fit the model of {manifest_path} ({exc})") from exc
    return models


def calculator_from_manifest(manifest_path: str | os.PathLike, weights: str | os.PathLike | None = None,
                             device: str = "auto") -> Calculator:
    """An ASE calculator for an exported model (a committee calculator when it has several)."""
    from mlip_autopipec.backends.mace.calculator import calculator_of
    from mlip_autopipec.backends.runner import resolve_device

    device = resolve_device(device)
    return calculator_of(load_exported_models(manifest_path, weights, device), device)


def _export_sources(source: Path):
    """(model files, an existing compiled model or None, the artifact or None) of `source`."""
    from mlip_autopipec.backends.base import ARTIFACT_NAME, PotentialArtifact
    from mlip_autopipec.backends.mace.calculator import model_paths_of

    if source.is_dir() or source.name == ARTIFACT_NAME:
        if not (source if source.is_file() else source / ARTIFACT_NAME).is_file():
            raise FileNotFoundError(f"{source}: no {ARTIFACT_NAME}; export needs a finished generation or a .model file")
        artifact = PotentialArtifact.load(source)
        if artifact.backend != "mace":
            raise ValueError(f"{source}: a {artifact.backend} potential; this exporter handles MACE models")
        artifact.verify()
        compiled = artifact.path("compiled_model") if "compiled_model" in artifact.files else None
        return model_paths_of(artifact), compiled, artifact
    if not source.is_file():
        raise FileNotFoundError(f"{source}: model to export does not exist")
    if source.suffix == ".pt":
        raise ValueError(f"{source}: a MACE training checkpoint holds only weights; export the .model file "
                         "(or a generation directory), or pass the checkpoint as `weights` with a manifest")
    return [source], None, None


def _compiled(model, existing: Path | None, target: Path) -> bool:
    if existing is not None and existing.is_file():
        shutil.copyfile(existing, target)
        return True
    import copy

    import torch
    from e3nn.util import jit

    try:
        compiled = jit.compile(copy.deepcopy(model))
        with atomic_path(target) as temporary:
            torch.jit.save(compiled, str(temporary))
    except Exception:  # TorchScript cannot compile every model variant; MACE itself skips it too
        return False
    return True


def _elements(model) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in model.atomic_numbers]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("mace-torch", "torch", "e3nn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions
