"""MaceConfig: `training:` with `backend: mace`. Keys keep `mace_run_train`'s own option names
(r_max, num_channels, max_L, E0s, ...; `command.py` maps them), except those of run.yaml's `train:`
section: epochs (--max_num_epochs), max_grad_norm (--clip_grad), committee_size (that many models,
seeds seed, seed+1, ...) and device ('auto' picks cuda when available). Other options go into
`extra_args` verbatim. Defaults are small (32 channels, L=1, 50 epochs: minutes on 2 CPU cores).
When fine-tuning, MACE takes the architecture from the starting model; the settings here are ignored.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ase.data import atomic_numbers, chemical_symbols
from pydantic import Field, field_validator, model_validator

from mlip_autopipec.backends.base import BaseTrainingConfig

# Options the backend itself sets; a user passing them in extra_args would silently fight it.
RESERVED_FLAGS = frozenset({
    "--name", "--seed", "--work_dir", "--log_dir", "--model_dir", "--checkpoints_dir", "--results_dir",
    "--downloads_dir", "--train_file", "--valid_file", "--test_file", "--energy_key", "--forces_key",
    "--stress_key", "--device", "--default_dtype", "--max_num_epochs", "--restart_latest",
    "--foundation_model", "--config",
})


class MaceConfig(BaseTrainingConfig):
    """A MACE model trained by `mace_run_train` (mace-torch)."""

    backend: Literal["mace"] = "mace"

    # Architecture (ignored when fine-tuning: the starting model's is kept).
    model: Literal["MACE", "ScaleShiftMACE"] = "MACE"
    r_max: float = Field(5.0, gt=0, description="cutoff radius in Angstrom")
    num_channels: int | None = Field(32, ge=1, description="channels per irrep (with max_L: hidden_irreps)")
    max_L: int | None = Field(1, ge=0, le=3, description="highest L of the hidden (message) irreps")
    hidden_irreps: str | None = Field(None, description="e.g. '32x0e + 32x1o'; instead of num_channels/max_L")
    max_ell: int = Field(3, ge=1, description="highest l of the spherical harmonics")
    correlation: int = Field(3, ge=1, description="correlation order of the product basis (body order - 1)")
    num_interactions: int = Field(2, ge=1, description="message-passing layers")
    num_radial_basis: int = Field(8, ge=1)
    num_cutoff_basis: int = Field(5, ge=1)
    radial_MLP: list[int] = Field(default_factory=lambda: [64, 64, 64])
    scaling: Literal["rms_forces_scaling", "std_scaling", "no_scaling"] = "rms_forces_scaling"
    pair_repulsion: bool = False

    # Isolated-atom energies: 'average' fits them by least squares on the training set,
    # 'estimated'/'foundation' take them from the starting model, a dict gives them per element.
    E0s: Literal["average", "estimated", "foundation"] | dict[str, float] = "average"

    # Optimisation (the unified run.yaml `train:` knobs map here).
    epochs: int = Field(50, ge=1, description="--max_num_epochs")
    batch_size: int = Field(10, ge=1)
    valid_batch_size: int | None = Field(None, ge=1, description="None: batch_size")
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0,
                                  description="share of the train split MACE holds out to pick the best epoch")
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(5e-7, ge=0)
    optimizer: Literal["adam", "adamw", "schedulefree"] = "adam"
    scheduler: Literal["ReduceLROnPlateau", "ExponentialLR"] = "ReduceLROnPlateau"
    lr_factor: float = Field(0.8, gt=0, lt=1, description="ReduceLROnPlateau factor")
    scheduler_patience: int = Field(50, ge=0, description="ReduceLROnPlateau patience in epochs")
    lr_scheduler_gamma: float = Field(0.9993, gt=0, le=1, description="ExponentialLR gamma")
    loss: Literal["weighted", "ef", "forces_only", "stress", "virials", "huber", "universal"] = "weighted"
    energy_weight: float = Field(1.0, ge=0)
    forces_weight: float = Field(100.0, ge=0)
    stress_weight: float = Field(1.0, ge=0)
    compute_stress: bool = Field(False, description="fit stress too (the data must carry REF_stress)")
    max_grad_norm: float | None = Field(10.0, gt=0, description="--clip_grad; None: no clipping")
    ema: bool = False
    ema_decay: float = Field(0.99, gt=0, lt=1)
    swa: bool = Field(False, description="MACE's stage two: lower lr, more energy weight at the end")
    start_swa: int | None = Field(None, ge=0, description="epoch stage two starts (None: 3/4 of epochs)")
    swa_lr: float = Field(1e-3, gt=0)
    swa_energy_weight: float = Field(1000.0, ge=0)
    swa_forces_weight: float = Field(100.0, ge=0)
    patience: int = Field(2048, ge=1, description="stop after this many epochs without improvement")
    eval_interval: int = Field(1, ge=1, description="validate (and checkpoint if better) every N epochs")
    freeze: int | None = Field(None, description="MACE's --freeze: freeze layers 1..N (negative: from the end)")
    error_table: Literal["PerAtomRMSE", "PerAtomMAE", "TotalRMSE", "TotalMAE"] = "PerAtomRMSE"
    num_workers: int = Field(0, ge=0, description="data-loader worker processes")

    # Fine-tuning from a foundation or previous model.
    foundation_head: str | None = Field(None, description="head of a multi-head starting model")
    foundation_model_elements: bool = Field(False, description="keep all elements of the starting model")

    # Runtime.
    default_dtype: Literal["float64", "float32"] = "float64"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    committee_size: int = Field(1, ge=1, le=16, description="models trained with seeds seed..seed+N-1")
    plot: bool = Field(False, description="let MACE plot its training curves (slow)")
    resume_failed_attempts: bool = Field(
        True, description="a retry into the same generation continues from the failed attempt's checkpoint")
    extra_args: list[str] = Field(default_factory=list, description="more mace_run_train options, verbatim")

    RUNTIME_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"timeout_seconds", "device", "num_workers", "plot", "resume_failed_attempts"})

    @field_validator("E0s")
    @classmethod
    def _element_symbols(cls, value):
        if isinstance(value, dict):
            unknown = [key for key in value if key not in chemical_symbols[1:]]
            if unknown:
                raise ValueError(f"E0s keys must be chemical symbols, got {unknown}")
            if not value:
                raise ValueError("E0s dict must not be empty (or use 'average')")
        return value

    @field_validator("extra_args")
    @classmethod
    def _not_reserved(cls, value: list[str]) -> list[str]:
        clashes = sorted({arg.split("=", 1)[0] for arg in value if arg.split("=", 1)[0] in RESERVED_FLAGS})
        if clashes:
            raise ValueError(f"extra_args may not set {clashes}: the MACE backend sets them itself "
                             "(use the matching config keys)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MaceConfig:
        if self.hidden_irreps is not None and {"num_channels", "max_L"} & self.model_fields_set:
            raise ValueError("give either hidden_irreps or num_channels/max_L, not both")
        if self.start_swa is not None and not self.swa:
            raise ValueError("start_swa is set but swa is false; set swa: true to use stage two")
        if self.swa and self.start_swa is not None and self.start_swa >= self.epochs:
            raise ValueError(f"start_swa ({self.start_swa}) must be below epochs ({self.epochs})")
        return self

    def e0s_argument(self) -> str:
        """--E0s as MACE reads it: a keyword, or a dict keyed by atomic number."""
        if isinstance(self.E0s, str):
            return self.E0s
        by_number = sorted((atomic_numbers[symbol], energy) for symbol, energy in self.E0s.items())
        return "{" + ", ".join(f"{number}: {energy!r}" for number, energy in by_number) + "}"

