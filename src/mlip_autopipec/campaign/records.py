"""One record per finished generation (workdir/generations/gen-NNN/generation.json), the stop
criteria over them, and the explored-γ statistics they hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
from pydantic import BaseModel, Field

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.campaign.config import CampaignConfig, StopSettings
from mlip_autopipec.campaign.results import GenerationSteps
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.generations import generation_dir
from mlip_autopipec.store import StructureStore

RECORD_NAME = "generation.json"


class GenerationRecord(BaseModel):
    generation: int
    potential: str  # artifact.json of the generation's potential
    potential_digest: str
    training_structures: int
    labels_total: int  # completed rows of the campaign after this generation's labelling
    labels_added: int
    labels_failed: int
    held_out_energy_rmse_mev_per_atom: float
    held_out_forces_rmse_mev_per_angstrom: float
    test_forces_rmse_mev_per_angstrom: float | None = None
    explored_frames: int
    # The explored frames' uncertainty: max γ for Pacemaker potentials; with committee selection the
    # committee's max force deviation (eV/Å) against trust_lower, as `uncertainty_measure` says.
    uncertainty_measure: str = "max_gamma"
    fraction_below_gamma_lower: float
    max_gamma_median: float | None = None
    max_gamma_max: float | None = None
    selected: int
    # Element -> why its atoms have no γ yet (the potential's species_without_gamma): they are
    # selected as uncertain, and the campaign is not called converged while any is listed.
    species_without_gamma: dict[str, str] = Field(default_factory=dict)
    step_seconds: dict[str, float] = Field(default_factory=dict)
    rss_mb_after: float | None = None  # resident memory of the campaign process after this generation

    def save(self, generations_root: str | Path) -> Path:
        target = generation_dir(generations_root, self.generation) / RECORD_NAME
        return atomic_write_text(target, self.model_dump_json(indent=2) + "\n")

    def table_row(self) -> dict:
        row = self.model_dump(exclude={"potential", "potential_digest", "step_seconds", "species_without_gamma"})
        row["species_without_gamma"] = ", ".join(sorted(self.species_without_gamma)) or "-"
        row.update({f"{step}_s": round(seconds, 1) for step, seconds in self.step_seconds.items()})
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}

    @property
    def labels_trained_on(self) -> int:
        """Labelled structures this generation's potential was trained on (train and test splits):
        the campaign's labels before its own labelling step."""
        return self.labels_total - self.labels_added


def record_generation(config: CampaignConfig, steps: GenerationSteps) -> GenerationRecord:
    """The generation's record from its step results, saved as generations/gen-NNN/generation.json;
    labels_total is read from the store now, the resident memory is this process's."""
    completed = StructureStore(config.store_url, campaign=config.campaign).status_counts()["completed"]
    held_out, test, explored = steps.held_out_metrics, steps.test_metrics, steps.explored
    record = GenerationRecord(
        generation=steps.generation, potential=steps.potential, potential_digest=steps.potential_digest,
        training_structures=steps.training_structures, labels_total=completed,
        labels_added=steps.labels.completed, labels_failed=steps.labels.failed,
        held_out_energy_rmse_mev_per_atom=held_out["energy_rmse_mev_per_atom"],
        held_out_forces_rmse_mev_per_angstrom=held_out["forces_rmse_mev_per_angstrom"],
        test_forces_rmse_mev_per_angstrom=test["forces_rmse_mev_per_angstrom"],
        explored_frames=explored.frames, uncertainty_measure=config.selection.uncertainty_key,
        fraction_below_gamma_lower=explored.fraction_below_gamma_lower,
        max_gamma_median=explored.max_gamma_median, max_gamma_max=explored.max_gamma_max,
        selected=steps.queued.selected, step_seconds=steps.step_seconds,
        species_without_gamma=PotentialArtifact.load(steps.potential).species_without_gamma,
        rss_mb_after=psutil.Process().memory_info().rss / 2**20)
    record.save(config.workdir / "generations")
    return record


def load_records(generations_root: str | Path) -> list[GenerationRecord]:
    root = Path(generations_root)
    paths = sorted(root.glob(f"gen-*/{RECORD_NAME}")) if root.is_dir() else []
    return [GenerationRecord.model_validate_json(path.read_text()) for path in paths]


def gamma_statistics(max_gamma: list[float], gamma_lower: float) -> dict[str, float | None]:
    if not max_gamma:
        return {"fraction_below_gamma_lower": 0.0, "max_gamma_median": None, "max_gamma_max": None}
    values = np.asarray(max_gamma, dtype=float)
    return {"fraction_below_gamma_lower": float(np.mean(values < gamma_lower)),
            "max_gamma_median": float(np.median(values)), "max_gamma_max": float(values.max())}


def stop_reason(records: list[GenerationRecord], stop: StopSettings) -> str | None:
    """Why the campaign is finished, or None to go on."""
    if not records:
        return None
    last = records[-1]
    if len(records) >= stop.max_generations:
        return f"reached max_generations={stop.max_generations}"
    if stop.label_budget is not None and last.labels_total >= stop.label_budget:
        return f"label budget spent ({last.labels_total} >= {stop.label_budget})"
    if stop.converged_fraction is not None and last.explored_frames and not last.species_without_gamma and \
            last.fraction_below_gamma_lower >= stop.converged_fraction:
        return (f"converged: {100 * last.fraction_below_gamma_lower:.0f}% of explored frames below "
                f"gamma_lower (>= {100 * stop.converged_fraction:.0f}%)")
    return None
