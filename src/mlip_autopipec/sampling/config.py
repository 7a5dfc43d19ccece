"""The sampling rules file: action magnitudes (top-level blocks) and the pipeline around them.

    rules = load_rules("campaigns/sampling-rules.yaml")

An action block that is absent is not used; `md` runs only with `enabled: true`. Every block
forbids unknown keys, so a misspelt key is an error naming the file and the key, never a silently
ignored setting. `campaigns/sampling-rules.yaml` documents every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlip_autopipec.config.run_files import load_yaml_model

QuenchMethod = Literal["none", "fire", "cg", "bfgs", "lbfgs"]
ForceSource = Literal["force_pre", "force_post"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Strict):
    """Blocks with a lower and an upper magnitude check that lower <= upper."""

    bounds: ClassVar[tuple[str, str]]

    @model_validator(mode="after")
    def _ordered(self):
        low, high = self.bounds
        if getattr(self, low) > getattr(self, high):
            raise ValueError(f"{low} ({getattr(self, low)}) is larger than {high} ({getattr(self, high)})")
        return self


class RigidTranslate(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_step", "max_step")
    min_step: float = Field(0.1, ge=0, description="Å")
    max_step: float = Field(0.5, gt=0, description="Å")
    weight: float = Field(1.0, ge=0, description="relative probability of picking this action")


class RigidRotate(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_deg", "max_deg")
    min_deg: float = Field(5.0, ge=0, le=180)
    max_deg: float = Field(30.0, gt=0, le=180)
    weight: float = Field(1.0, ge=0)


class PushPull(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_delta", "max_delta")
    min_delta: float = Field(0.1, ge=0, description="Å: change of one interatomic distance")
    max_delta: float = Field(0.5, gt=0)
    weight: float = Field(1.0, ge=0)


class DihedralTwist(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_deg", "max_deg")
    min_deg: float = Field(10.0, ge=0, le=180)
    max_deg: float = Field(60.0, gt=0, le=180)
    bond_factor: float = Field(1.2, gt=0, description="bonded if distance < bond_factor x sum of covalent radii")
    bond_cap: float = Field(3.0, gt=0, description="Å: never bonded beyond this distance")
    weight: float = Field(1.0, ge=0)


class Jitter(_Strict):
    sigma: float = Field(0.05, gt=0, description="Å: standard deviation of the Gaussian displacement")
    weight: float = Field(1.0, ge=0)


class MolecularDynamics(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_steps", "max_steps")
    enabled: bool = False
    integrator: Literal["langevin", "velocity_verlet"] = "langevin"
    min_temp_K: float = Field(300.0, gt=0)
    max_temp_K: float = Field(1000.0, gt=0)
    min_steps: int = Field(10, ge=1)
    max_steps: int = Field(50, ge=1)
    dt_fs: float = Field(1.0, gt=0)
    friction: float = Field(0.01, ge=0, description="Langevin friction in 1/fs")
    weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _temperatures_ordered(self):
        if self.min_temp_K > self.max_temp_K:
            raise ValueError(f"min_temp_K ({self.min_temp_K}) is larger than max_temp_K ({self.max_temp_K})")
        return self


class NoisePlugin(_Strict):
    name: Literal["noise"]
    sigma: float = Field(0.01, ge=0, description="Å")
    clip: float | None = Field(0.05, gt=0, description="Å: each coordinate's noise is clipped to ±clip")
    movable_only: bool = True


ActionPlugin = Annotated[NoisePlugin, Field(discriminator="name")]


class MinDistValidator(_Strict):
    name: Literal["min_dist"]
    min_factor: float = Field(0.7, ge=0, description="reject a pair closer than min_factor x sum of covalent radii")
    hard_min: float = Field(0.5, ge=0, description="Å: reject any pair closer than this")


class QualityValidator(_Strict):
    """Gate on the model's response to the action: forces within [min_force, max_force] and a
    score = max force / max displacement (eV/Å²) of at least score_threshold."""

    name: Literal["quality"]
    force_source: Literal["force_pre"] = "force_pre"
    max_force: float | None = Field(20.0, gt=0, description="eV/Å: above this the action broke the structure")
    min_force: float | None = Field(None, ge=0, description="eV/Å: below this the action taught nothing")
    score_threshold: float | None = Field(None, ge=0, description="eV/Å²")


Validator = Annotated[MinDistValidator | QualityValidator, Field(discriminator="name")]


class Trigger(_Strict):
    """A step's structure becomes a DFT candidate when any enabled rule fires."""

    force_source: ForceSource = "force_pre"
    max_force: float | None = Field(3.0, gt=0, description="eV/Å: largest atomic force above this")
    top_k: int = Field(3, ge=1)
    top_k_force: float | None = Field(None, gt=0, description="eV/Å: mean of the top_k atomic forces above this")
    gamma: float | None = Field(None, gt=0, description="max extrapolation grade γ above this (ACE + active set)")


class StepTrace(_Strict):
    name: Literal["step_trace"]


class BasinRegistry(_Strict):
    name: Literal["basin_registry"]
    tolerance: float = Field(0.05, gt=0, description="Å: grid of the basin fingerprint and descriptor match")
    energy_tolerance: float = Field(1e-3, gt=0, description="eV/atom: a known basin also matches in energy")


Recorder = Annotated[StepTrace | BasinRegistry, Field(discriminator="name")]


class Pipeline(_Strict):
    action_plugins: list[ActionPlugin] = Field(default_factory=list)
    validators: list[Validator] = Field(default_factory=lambda: [MinDistValidator(name="min_dist")])
    trigger: Trigger = Field(default_factory=Trigger)
    recorders: list[Recorder] = Field(
        default_factory=lambda: [StepTrace(name="step_trace"), BasinRegistry(name="basin_registry")])

    @field_validator("action_plugins", "validators", "recorders", mode="before")
    @classmethod
    def _names_alone(cls, value):
        """`- step_trace` is short for `- name: step_trace`."""
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _step_trace_present(self):
        if not any(isinstance(r, StepTrace) for r in self.recorders):
            raise ValueError("recorders must include step_trace: resume and the action-quality report read steps.jsonl")
        return self

    @property
    def basin_registry(self) -> BasinRegistry | None:
        return next((r for r in self.recorders if isinstance(r, BasinRegistry)), None)


class Quench(_Strict):
    method: QuenchMethod = "fire"
    fmax: float = Field(0.05, gt=0, description="eV/Å")
    steps: int = Field(200, ge=1)


class SamplingRules(_Strict):
    rigid_translate: RigidTranslate | None = None
    rigid_rotate: RigidRotate | None = None
    push_pull: PushPull | None = None
    dihedral_twist: DihedralTwist | None = None
    jitter: Jitter | None = None
    md: MolecularDynamics | None = None
    quench: Quench = Field(default_factory=Quench)
    pipeline: Pipeline = Field(default_factory=Pipeline)

    @model_validator(mode="after")
    def _some_action(self):
        if not self.enabled_actions():
            raise ValueError("no action enabled: give at least one of rigid_translate, rigid_rotate, push_pull, "
                             "dihedral_twist, jitter or md (with enabled: true) a positive weight")
        return self

    def enabled_actions(self) -> dict[str, BaseModel]:
        """Action name -> its settings, for the blocks present with a positive weight (md: enabled)."""
        out = {}
        for name in ("rigid_translate", "rigid_rotate", "push_pull", "dihedral_twist", "jitter", "md"):
            block = getattr(self, name)
            if block is None or block.weight <= 0 or (name == "md" and not block.enabled):
                continue
            out[name] = block
        return out


def load_rules(path: str | Path) -> SamplingRules:
    """Read and check a rules file; a ConfigError (a ValueError) names the file and the key."""
    return load_yaml_model(path, SamplingRules)
