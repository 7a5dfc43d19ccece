"""The unified run.yaml: one task (train, finetune, resume, evaluate, infer, export) for one backend.

    backend: mace                 # pacemaker | mace | equiformer_v2 | gemnet_oc
    task: train                   # train | finetune | resume | evaluate | infer | export
    run_dir: models/cu-mace/run-1 # outputs; relative paths are relative to the working directory
    model_in: ...                 # checkpoint / model / generation directory (finetune, resume, export)
    model: {manifest: .../manifest.json, weights: .../weights.pt}
    device: cuda                  # cuda | cpu; cuda falls back to cpu with a warning when absent
    backend_python: /opt/fairchem/bin/python   # the backend's own interpreter (FairChem)
    backend_env: {OMP_NUM_THREADS: "2"}
    backend_args: [--ema]
    data:
      train: data/train.extxyz    # extxyz, an ASE LMDB file, or a directory of *.lmdb / *.aselmdb shards
      val: data/val.extxyz
      test: data/test.extxyz
      indices: [0, 5, 7]          # explicit indices of the active split (overrides sampling)
      indices_path: idx.json      # JSON list of indices (ignored when indices is set)
      train_indices: {max_samples: 100, shuffle: true, seed: 0, indices_path: null}
      val_indices: {max_samples: 20}
    train:
      input_json: model.json      # required for MACE train: MaceConfig keys (architecture, ...)
      epochs: 2
      ...                         # the knobs of the seed's core trainer, see TrainSection
    eval: {energy_only: false, amp: false}

Every key is checked: unknown keys, wrong types, keys a task or backend needs but lacks, and
train knobs the chosen backend cannot honour are errors naming the key (and the file, through
`load_run_spec`). `training_config()` turns the file into the backend's training config
(MaceConfig from train.input_json plus the knobs; PacemakerConfig likewise).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlip_autopipec.config.run_files import ConfigError, _describe, read_yaml_mapping
from mlip_autopipec.config.training import BaseTrainingConfig, parse_training_config

Backend = Literal["pacemaker", "mace", "equiformer_v2", "gemnet_oc"]
Task = Literal["train", "finetune", "resume", "evaluate", "infer", "export"]
FAIRCHEM_BACKENDS = ("equiformer_v2", "gemnet_oc")
TRAINING_TASKS = ("train", "finetune", "resume")

# train.<knob> -> the backend config's field. A knob missing from a backend's map cannot be honoured
# by that backend's training tool; setting it is an error rather than silently ignored.
KNOBS: dict[str, dict[str, str]] = {
    "mace": {
        "epochs": "epochs", "batch_size": "batch_size", "num_workers": "num_workers", "seed": "seed",
        "lr": "lr", "weight_decay": "weight_decay", "optimizer": "optimizer", "max_grad_norm": "max_grad_norm",
        "save_every": "eval_interval", "energy_weight": "energy_weight", "force_weight": "forces_weight",
        "head_key": "foundation_head",
    },
    "pacemaker": {"epochs": "maxiter", "batch_size": "batch_size", "seed": "seed"},
    "equiformer_v2": {"seed": "seed"},
    "gemnet_oc": {"seed": "seed"},
}
# Knobs about how progress is shown; every backend accepts them (MACE reports once per epoch).
DISPLAY_KNOBS = ("progress_bar", "progress_mininterval")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    manifest: Path | None = Field(None, description="manifest.json of an export (preferred for finetune/resume)")
    weights: Path | None = Field(None, description="state_dict / checkpoint; optional if the manifest has weights")


class SplitSampling(_Strict):
    max_samples: int | None = Field(None, ge=1)
    shuffle: bool = False
    seed: int = 0
    indices_path: Path | None = None


class DataSection(_Strict):
    train: Path | None = None
    val: Path | None = None
    test: Path | None = None
    indices: list[int] | None = None
    indices_path: Path | None = None
    train_indices: SplitSampling = Field(default_factory=SplitSampling)
    val_indices: SplitSampling = Field(default_factory=SplitSampling)

    @field_validator("indices")
    @classmethod
    def _non_negative(cls, value):
        if value is not None and any(index < 0 for index in value):
            raise ValueError("indices must be >= 0")
        return value


class TrainSection(_Strict):
    """The trainer knobs some backend honours (see KNOBS); None means: the backend's own default."""

    input_json: Path | None = Field(None, description="MACE: JSON of MaceConfig keys (model.json)")
    config_yml: Path | None = Field(None, description="FairChem: its native config")
    identifier: str | None = Field(None, description="FairChem run identifier")

    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    num_workers: int | None = Field(None, ge=0)
    seed: int | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    optimizer: str | None = None
    max_grad_norm: float | None = Field(None, gt=0)
    save_every: int | None = Field(None, ge=1)
    progress_bar: Literal["auto"] | bool = "auto"
    progress_mininterval: float = Field(0.5, ge=0)
    energy_weight: float | None = Field(None, ge=0)
    force_weight: float | None = Field(None, ge=0)
    head_key: str | None = None

    def knobs_set(self) -> dict[str, Any]:
        """The optimisation knobs given in the file (not input_json/config_yml/identifier/display)."""
        skip = {"input_json", "config_yml", "identifier", *DISPLAY_KNOBS}
        return {key: getattr(self, key) for key in self.model_fields_set - skip if getattr(self, key) is not None}


class EvalSection(_Strict):
    energy_only: bool = False
    amp: bool = False


class RunSpec(_Strict):
    backend: Backend
    task: Task
    run_dir: Path
    model_in: Path | None = None
    model: ModelRef = Field(default_factory=ModelRef)
    device: Literal["cuda", "cpu"] = "cuda"
    backend_python: Path | None = None
    backend_env: dict[str, str] = Field(default_factory=dict)
    backend_args: list[str] = Field(default_factory=list)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    @field_validator("backend_env", mode="before")
    @classmethod
    def _env_as_strings(cls, value):
        if isinstance(value, dict):
            return {str(key): str(item) for key, item in value.items()}
        return value

    @model_validator(mode="after")
    def _required_per_task_and_backend(self) -> RunSpec:
        task, backend = self.task, self.backend
        has_model = self.model_in is not None or self.model.manifest is not None
        if task == "export" and self.model_in is None:
            raise ValueError("model_in: required for task 'export' (the checkpoint or model to export)")
        if task in ("finetune", "resume") and not has_model and self.model.weights is None:
            raise ValueError(f"model_in: required for task '{task}' (or model.manifest)")
        if task in ("evaluate", "infer") and not has_model:
            raise ValueError(f"model_in: required for task '{task}' (or model.manifest): which model to run")
        if self.model.weights is not None and self.model.manifest is None and task != "resume":
            raise ValueError("model.weights: needs model.manifest (the architecture the weights belong to)")
        if task in ("evaluate", "infer") and self.active_split is None:
            raise ValueError(f"data: task '{task}' needs data.test, data.val or data.train")
        if backend in FAIRCHEM_BACKENDS:
            if task in TRAINING_TASKS and self.train.config_yml is None:
                raise ValueError(f"train.config_yml: required for backend '{backend}' (FairChem's own config)")
        else:
            if task in TRAINING_TASKS and self.data.train is None:
                raise ValueError(f"data.train: required for task '{task}'")
            if backend == "mace" and task == "train" and self.train.input_json is None:
                raise ValueError("train.input_json: required for backend 'mace' task 'train' "
                                 "(model.json: the MaceConfig keys of the model to train)")
        unsupported = sorted(set(self.train.knobs_set()) - set(KNOBS[backend]))
        if unsupported:
            raise ValueError(f"train.{unsupported[0]}: not supported by the {backend} backend (its training "
                             f"tool has no equivalent option; supported knobs: {sorted(KNOBS[backend])}); "
                             f"remove it{' or pass a native option through backend_args' if backend == 'mace' else ''}")
        if self.eval.amp and self.device == "cpu":
            warnings.warn("eval.amp works on CUDA only; evaluation runs without it on the CPU",
                          RuntimeWarning, stacklevel=2)
        return self

    @property
    def active_split(self) -> Literal["train", "val", "test"] | None:
        """The split a task works on: train for training tasks, else the first of test, val, train given."""
        if self.task in TRAINING_TASKS:
            return "train" if self.data.train is not None else None
        for split in ("test", "val", "train"):
            if getattr(self.data, split) is not None:
                return split
        return None

    def input_paths(self) -> dict[str, Path]:
        """Every input file the spec names, by its dotted key."""
        paths = {
            "model_in": self.model_in, "model.manifest": self.model.manifest, "model.weights": self.model.weights,
            "backend_python": self.backend_python, "data.train": self.data.train, "data.val": self.data.val,
            "data.test": self.data.test, "data.indices_path": self.data.indices_path,
            "data.train_indices.indices_path": self.data.train_indices.indices_path,
            "data.val_indices.indices_path": self.data.val_indices.indices_path,
            "train.input_json": self.train.input_json, "train.config_yml": self.train.config_yml,
        }
        return {key: path for key, path in paths.items() if path is not None}

    def check_inputs_exist(self) -> None:
        missing = [f"{key}: {path} does not exist" for key, path in self.input_paths().items() if not path.exists()]
        if missing:
            raise ValueError("; ".join(missing))

    def resolved_device(self) -> str:
        """'cuda' or 'cpu'; a requested cuda without CUDA falls back to cpu with a warning."""
        from mlip_autopipec.backends.runner import resolve_device

        return resolve_device(self.device)

    def indices_for(self, split: Literal["train", "val", "test"]) -> list[int] | None:
        """Explicit indices for `split` (data.indices / indices_path apply to the active split)."""
        if split == self.active_split:
            if self.data.indices is not None:
                return list(self.data.indices)
            if self.data.indices_path is not None:
                return _read_indices(self.data.indices_path, "data.indices_path")
        sampling = self.sampling_for(split)
        if sampling is not None and sampling.indices_path is not None:
            return _read_indices(sampling.indices_path, f"data.{split}_indices.indices_path")
        return None

    def sampling_for(self, split: str) -> SplitSampling | None:
        return {"train": self.data.train_indices, "val": self.data.val_indices}.get(split)

    def training_config(self) -> BaseTrainingConfig:
        """The backend's training config: train.input_json's keys, then the train knobs, then device
        and backend_args on top."""
        if self.backend in FAIRCHEM_BACKENDS:
            raise NotImplementedError(f"{self.backend} trains natively from train.config_yml; it has no "
                                      "training config of ours")
        settings: dict[str, Any] = {}
        if self.train.input_json is not None:
            settings = _read_input_json(self.train.input_json, self.backend)
        for knob, value in self.train.knobs_set().items():
            settings[KNOBS[self.backend][knob]] = value
        if self.backend == "mace":
            settings["device"] = self.device
            if self.backend_args:
                settings["extra_args"] = list(settings.get("extra_args", [])) + list(self.backend_args)
        settings["backend"] = self.backend
        try:
            return parse_training_config(settings)
        except ValidationError as exc:
            source = self.train.input_json or "train"
            raise ConfigError(f"{source} (with the train knobs): "
                              + "; ".join(_describe(error) for error in exc.errors())) from None


def load_run_spec(path: str | Path, check_paths: bool = True) -> RunSpec:
    """Read and validate run.yaml; errors name the file and the key. Input files must exist."""
    path = Path(path)
    data = read_yaml_mapping(path, kind="run file")
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe_run_error(error) for error in exc.errors())) from None
    if check_paths:
        try:
            spec.check_inputs_exist()
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return spec


def is_run_spec(data: dict) -> bool:
    """A unified run.yaml (top-level `task`) rather than the campaign-style training config."""
    return isinstance(data, dict) and "task" in data


def _describe_run_error(error: dict) -> str:
    if error["type"] == "value_error" and not error["loc"]:
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    return _describe(error)


def _read_input_json(path: Path, backend: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: train.input_json does not exist") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of {backend} settings, got {type(data).__name__}")
    if data.get("backend", backend) != backend:
        raise ConfigError(f"{path}: backend {data['backend']!r} does not match run.yaml's backend {backend!r}")
    return dict(data)


def _read_indices(path: Path, key: str) -> list[int]:
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not JSON: {exc}") from None
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in values):
        raise ConfigError(f"{key}: {path} must hold a JSON list of non-negative integers")
    return values
