"""PacemakerConfig: `training:` with `backend: pacemaker` (the default). Sections keep Pacemaker's own
key names (npot, fs_parameters, kappa, L1_coeffs, ...); `input_yaml` maps them onto input.yaml.
Defaults are small (about 30 structures fit in under a minute on 2 cores).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ase.data import chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlip_autopipec.backends.base import BaseTrainingConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingConfig(_Strict):
    """Pacemaker's `potential: embeddings: ALL:` block."""

    npot: Literal["FinnisSinclairShiftedScaled", "FinnisSinclair"] = "FinnisSinclairShiftedScaled"
    fs_parameters: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0, 0.5])
    ndensity: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _two_parameters_per_density(self) -> EmbeddingConfig:
        if len(self.fs_parameters) != 2 * self.ndensity:
            raise ValueError(f"fs_parameters needs 2 numbers per density (ndensity={self.ndensity}), "
                             f"got {len(self.fs_parameters)}")
        return self


class RadialConfig(_Strict):
    """Pacemaker's `potential: bonds: ALL:` block, less `rcut` (that is `cutoff`)."""

    radbase: Literal["SBessel", "ChebExpCos", "ChebPow"] = "SBessel"
    radparameters: list[float] = Field(default_factory=lambda: [5.25])
    dcut: float = Field(0.01, gt=0)
    NameOfCutoffFunction: Literal["cos", "cos_poly"] = "cos"


class LossConfig(_Strict):
    """Pacemaker's `fit: loss:`; kappa is the weight of forces against energies (0..1 or 'auto')."""

    kappa: float | Literal["auto"] = 0.3
    L1_coeffs: float = Field(1e-8, ge=0)
    L2_coeffs: float = Field(1e-8, ge=0)
    w0_rad: float = Field(0.0, ge=0, description="radial smoothness regularisation")
    w1_rad: float = Field(0.0, ge=0)
    w2_rad: float = Field(0.0, ge=0)

    @field_validator("kappa")
    @classmethod
    def _fraction(cls, value):
        if value != "auto" and not 0.0 <= value <= 1.0:
            raise ValueError(f"kappa must be in [0, 1] or 'auto', got {value}")
        return value


class EnergyBasedWeighting(_Strict):
    """Pacemaker's EnergyBasedWeightingPolicy: more weight on low-energy structures."""

    type: Literal["EnergyBasedWeightingPolicy"] = "EnergyBasedWeightingPolicy"
    DElow: float = 1.0
    DEup: float = 10.0
    DFup: float | None = 50.0
    DE: float = 1.0
    DF: float = 1.0
    wlow: float | None = 0.75
    energy: Literal["convex_hull", "cohesive"] = "convex_hull"
    reftype: Literal["all", "bulk", "cluster"] = "all"


class EarlyStoppingConfig(_Strict):
    """Stop when the relative loss decrease per iteration stays below a threshold for `patience` iterations."""

    min_relative_train_loss_per_iter: float | None = None
    min_relative_test_loss_per_iter: float | None = None
    patience: int = Field(200, ge=1)


class ActiveSetConfig(_Strict):
    """`pace_activeset` options for the extrapolation-grade (gamma) active set."""

    # True: every training atom enters the MaxVol selection, so training structures read gamma <= ~1.
    # Pacemaker's own default (False) first drops atoms with large force errors, which in a young,
    # loosely fitted potential makes training structures look extrapolative.
    all_atoms: bool = True
    gamma_tolerance: float = Field(1.01, ge=1.0)
    maxvol_iters: int = Field(300, ge=1)
    maxvol_refinement: int = Field(5, ge=0)


class PacemakerConfig(BaseTrainingConfig):
    """ACE potential fitted by Pacemaker (`pacemaker input.yaml`)."""

    backend: Literal["pacemaker"] = "pacemaker"
    elements: list[str] | None = Field(None, description="None: the elements found in the dataset")

    # Basis: cutoff and size.
    cutoff: float = Field(5.0, gt=0, description="outer cutoff rcut in Angstrom")
    number_of_functions_per_element: int = Field(20, ge=1)
    # Index 0 is the pair (2-body) order, 1 the 3-body order, and so on; the length sets the body order.
    nradmax_by_orders: list[int] = Field(default_factory=lambda: [6, 3, 2])
    lmax_by_orders: list[int] = Field(default_factory=lambda: [0, 2, 1])
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    radial: RadialConfig = Field(default_factory=RadialConfig)

    # Loss and optimiser.
    loss: LossConfig = Field(default_factory=LossConfig)
    weighting: EnergyBasedWeighting | None = Field(None, description="None: uniform weights")
    optimizer: Literal["BFGS", "L-BFGS-B"] = "BFGS"
    optimizer_options: dict[str, float | int] = Field(default_factory=dict,
                                                      description="passed to scipy.optimize.minimize")
    maxiter: int = Field(100, ge=1, description="optimiser iterations (per ladder step when upfitting)")
    batch_size: int = Field(50, ge=1)
    display_step: int = Field(10, ge=1, description="test metrics are computed every display_step iterations")
    early_stopping: EarlyStoppingConfig | None = None

    # Growing the basis (upfitting): int = functions per step, float in (0, 1) = fraction, or both.
    ladder_step: int | float | list[int | float] | None = None
    ladder_type: Literal["body_order", "power_order"] = "body_order"
    # With an initial potential: 'continue' refits the previous potential as it is (the basis
    # settings above are ignored); 'upfit' starts from it and grows it to the basis above.
    fine_tune: Literal["continue", "upfit"] = "continue"

    # Energies: None fits the dataset's energy_corrected as written; a number or per-element dict
    # is subtracted per atom from `energy`; 'auto' lets Pacemaker fit a per-element shift.
    reference_energy: float | dict[str, float] | Literal["auto"] | None = None
    # 'auto': ZBL inner core below the shortest distance in the training data; None: no core.
    repulsion: Literal["auto"] | None = "auto"

    active_set: ActiveSetConfig = Field(default_factory=ActiveSetConfig)

    RUNTIME_ONLY: ClassVar[frozenset[str]] = frozenset({"timeout_seconds", "display_step"})

    @field_validator("elements")
    @classmethod
    def _known_symbols(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [symbol for symbol in value if symbol not in chemical_symbols[1:]]
        if unknown:
            raise ValueError(f"unknown chemical symbol(s) {unknown}")
        if not value:
            raise ValueError("elements must not be empty (leave it out to take them from the dataset)")
        return sorted(set(value))

    @field_validator("reference_energy")
    @classmethod
    def _reference_symbols(cls, value):
        if isinstance(value, dict):
            unknown = [key for key in value if key != "shift" and key not in chemical_symbols[1:]]
            if unknown:
                raise ValueError(f"reference_energy keys must be chemical symbols (or 'shift'), got {unknown}")
        return value

    @field_validator("ladder_step")
    @classmethod
    def _ladder_step_shape(cls, value):
        if value is None:
            return value
        if isinstance(value, list) and not 1 <= len(value) <= 2:
            raise ValueError("ladder_step list takes at most two entries: [functions, fraction]")
        for step in value if isinstance(value, list) else [value]:
            whole = isinstance(step, int) and step >= 1
            fraction = isinstance(step, float) and 0.0 < step < 1.0
            if not (whole or fraction):
                raise ValueError(f"ladder_step entries are integers >= 1 or fractions in (0, 1), got {step!r}")
        return value

    @model_validator(mode="after")
    def _orders_match(self) -> PacemakerConfig:
        if len(self.nradmax_by_orders) != len(self.lmax_by_orders):
            raise ValueError(f"nradmax_by_orders ({len(self.nradmax_by_orders)} orders) and lmax_by_orders "
                             f"({len(self.lmax_by_orders)} orders) must have the same length")
        if not self.lmax_by_orders or self.lmax_by_orders[0] != 0:
            raise ValueError("lmax_by_orders must start with 0 (the pair order has no angular part)")
        if any(n < 1 for n in self.nradmax_by_orders) or any(lmax < 0 for lmax in self.lmax_by_orders):
            raise ValueError("nradmax_by_orders entries must be >= 1 and lmax_by_orders entries >= 0")
        return self
