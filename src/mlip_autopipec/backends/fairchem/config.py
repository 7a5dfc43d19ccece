"""FairChemConfig: our training settings for EquiformerV2 and GemNet-OC (backend equiformer_v2 |
gemnet_oc), from which `native_config.build_native_config` writes FairChem's own config yml.

The size knobs map onto each model's own keys (see native_config.py): `num_layers` is
EquiformerV2's num_layers / GemNet-OC's num_blocks, `channels` EquiformerV2's sphere_channels /
GemNet-OC's emb_size_atom (the other widths follow from it). `model_overrides` sets any other key
of the backbone by FairChem's own name. Defaults are tiny: a few CPU steps on a handful of structures.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mlip_autopipec.backends.base import BaseTrainingConfig

FAIRCHEM_BACKENDS = ("equiformer_v2", "gemnet_oc")


class FairChemConfig(BaseTrainingConfig):
    backend: Literal["equiformer_v2", "gemnet_oc"]

    # Model size
    cutoff: float = Field(5.0, gt=0, description="neighbour cutoff radius, Angstrom")
    max_neighbors: int = Field(20, ge=1)
    num_layers: int = Field(2, ge=1, description="EquiformerV2 num_layers / GemNet-OC num_blocks")
    channels: int = Field(16, ge=2, description="EquiformerV2 sphere_channels / GemNet-OC emb_size_atom")
    lmax: int = Field(2, ge=1, le=6, description="EquiformerV2 only: highest spherical-harmonic degree")
    model_overrides: dict[str, Any] = Field(default_factory=dict,
                                            description="backbone keys by FairChem's own names, set last")

    # Optimisation (FairChem's optim section)
    epochs: int = Field(2, ge=1, description="optim.max_epochs")
    batch_size: int = Field(4, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(5e-4, gt=0, description="optim.lr_initial")
    optimizer: Literal["AdamW", "Adam"] = "AdamW"
    weight_decay: float = Field(0.0, ge=0)
    energy_coefficient: float = Field(1.0, ge=0)
    force_coefficient: float = Field(10.0, ge=0)
    max_grad_norm: float | None = Field(20.0, gt=0)
    eval_every: int | None = Field(None, ge=1, description="validate every N steps (default: once per epoch)")
    num_workers: int = Field(0, ge=0)

    # How it runs
    device: Literal["cpu", "cuda", "auto"] = "auto"
    amp: bool = False
    print_every: int = Field(1, ge=1, description="log a training line every N steps")
    extra_args: list[str] = Field(default_factory=list, description="appended to the fairchem command line")

    @model_validator(mode="after")
    def _no_baseline(self) -> FairChemConfig:
        if self.baseline is not None:
            raise ValueError("baseline: delta learning is not supported by the FairChem backend")
        return self

    RUNTIME_ONLY: ClassVar[frozenset[str]] = frozenset({"timeout_seconds", "device", "print_every", "num_workers"})

