"""Prefect block types of the product (registered by deployments/setup_server.py)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field


class PotentialGeneration(Block):
    """One trained generation of a campaign's potential: where its files are and how good it is.

    Load it anywhere with `PotentialGeneration.load("<campaign>-gen-003")` (a campaign's) or
    `PotentialGeneration.load("<name>-gen-000")` (a `flows.train` run's, see `--name`).
    """

    _block_type_name = "Potential Generation"
    _block_type_slug = "potential-generation"
    _description = "A trained interatomic potential of one active-learning generation."

    campaign: str
    generation: int
    backend: str
    version: str = Field(description="version of the training tool")
    generation_dir: str
    files: dict[str, str] = Field(description="role -> absolute path (potential, active set, logs, ...)")
    potential_digest: str
    dataset_digest: str
    metrics: dict[str, float] = Field(default_factory=dict, description="training and test errors")
    energy_compared_with: str = Field("energy", description="the label energy errors are computed against: "
                                                            "the energy the potential was fitted to")
