"""Publish a trained generation: a PotentialGeneration block plus report and table artifacts.

Artifact keys are per campaign, so each run of a campaign adds a version to the same artifact.
With storage, the generation directory (potential files, artifact.json, report/ with the evaluation
JSON, plots and report.md) is uploaded first, as a content-addressed tree named
`names/<slug>/generations/gen-NNN`; only then is the block saved, with the objects' URLs and digests.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mlip_autopipec.backends import PotentialArtifact
from mlip_autopipec.backends.base import ARTIFACT_NAME
from mlip_autopipec.campaign.labelling import slug  # noqa: F401 (tasks import it from here)
from mlip_autopipec.campaign.travel import generation_name
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.generations import generation_index
from mlip_autopipec.storage import ObjectStore
from mlip_autopipec.validation.plots import markdown_image
from mlip_autopipec.validation.results import Evaluation
from tasks.blocks import PotentialGeneration
from tasks.storage import open_storage

REPORT_FILE = "report/report.md"  # in the generation directory, beside evaluation-<split>.json and the plots


class BlockConflict(ValueError):
    """A block of that name already describes another potential."""


@task(name="publish")
def publish_task(campaign: str, artifact_path: str, evaluation: Evaluation, name: str | None = None,
                 storage: str | None = None) -> str:
    """Save the generation as the PotentialGeneration block `<name>-gen-NNN` (`name` defaults to the
    campaign). Re-publishing the same potential updates its block; a block of that name that holds
    another potential that still exists (another run, other data, or uploaded to storage) is never
    replaced: BlockConflict says so. A block whose potential is gone from its generation directory
    (the run was deleted) and was never uploaded is replaced, with a warning.

    `storage` (a URL or a remote-file-system block name, see tasks/storage.py): upload the generation
    directory first; an upload that fails raises ObjectStoreError and saves no block."""
    artifact = PotentialArtifact.load(artifact_path)
    index = generation_index(artifact.generation_dir)
    test_metrics = {f"eval_{key}": value for key, value in evaluation.metrics.items()}
    block_name = f"{slug(name or campaign)}-gen-{index:03d}"
    existing = _existing_block(block_name)
    if existing is not None and existing.potential_digest != artifact.digest:
        if not _still_there(existing):
            get_run_logger().warning(f"block {block_name} described a potential no longer in "
                                     f"{existing.generation_dir}: it now describes {artifact.generation_dir}")
        else:
            raise BlockConflict(
                f"block {block_name} already holds another potential (digest {existing.potential_digest[:12]}, "
                f"{existing.generation_dir}); not replacing it with {artifact.generation_dir} "
                f"(digest {artifact.digest[:12]}): publish under another name (flows.train --name, or another "
                "campaign name)")
    uploaded = {}
    if storage is not None:
        atomic_write_text(Path(artifact.generation_dir) / REPORT_FILE,
                          report_markdown(campaign, index, artifact, evaluation, block_name))
        uploaded = upload_generation(open_storage(storage), artifact, generation_name(slug(name or campaign), index))
        get_run_logger().info(f"uploaded {artifact.generation_dir} to {uploaded['tree_url']}")
    block = PotentialGeneration(
        campaign=campaign, generation=index, backend=artifact.backend, version=artifact.version,
        generation_dir=str(Path(artifact.generation_dir).resolve()),
        files={role: str(artifact.path(role).resolve()) for role in artifact.files},
        potential_digest=artifact.digest, dataset_digest=artifact.dataset_digest,
        metrics={**artifact.metrics, **test_metrics},
        energy_compared_with=evaluation.energy_compared_with,
        storage=storage, **uploaded,
    )
    block.save(block_name, overwrite=True)

    create_table_artifact(
        key=f"{slug(campaign)}-potential-metrics",
        table=[{"generation": index, "metric": key, "value": round(value, 4)}
               for key, value in sorted({**artifact.metrics, **test_metrics}.items())],
        description=f"{campaign} generation {index}: metrics",
    )
    create_markdown_artifact(key=f"{slug(campaign)}-potential-report",
                             markdown=report_markdown(campaign, index, artifact, evaluation, block_name, block),
                             description=f"{campaign} generation {index}: report")
    return block_name


def upload_generation(store: ObjectStore, artifact: PotentialArtifact, name: str) -> dict:
    """Upload the generation directory as a tree and point `name` at it: the block's storage fields."""
    tree = store.put_tree(artifact.generation_dir)
    files = store.tree_files(tree.digest)
    objects = {role: store.object_url(files[relative]["digest"]) for role, relative in artifact.files.items()}
    objects["artifact"] = store.object_url(files[ARTIFACT_NAME]["digest"])
    store.set_name(name, tree.digest)
    return {"tree_digest": tree.digest, "tree_url": tree.url, "objects": objects}


def _still_there(block: PotentialGeneration) -> bool:
    """Whether the potential the block describes can still be had: uploaded, or in its generation directory."""
    if block.tree_digest is not None:
        return True
    artifact_file = Path(block.generation_dir) / ARTIFACT_NAME
    return artifact_file.is_file() and PotentialArtifact.load(artifact_file).digest == block.potential_digest


def _existing_block(block_name: str) -> PotentialGeneration | None:
    try:
        return PotentialGeneration.load(block_name)
    except ValueError:  # Prefect: "Unable to find block document named ..."
        return None


def backend_version(artifact: PotentialArtifact) -> str:
    """"pacemaker 0.4.0rc1": the backend's name once, also where its version string already starts with it."""
    version = artifact.version.strip()
    return version if version.split(" ")[0].lower() == artifact.backend.lower() else f"{artifact.backend} {version}"


def report_markdown(campaign: str, index: int, artifact: PotentialArtifact, evaluation: Evaluation,
                    block_name: str, block: PotentialGeneration | None = None) -> str:
    """The report; with `block` of an uploaded generation, also where its objects are (the report
    inside the uploaded tree cannot name the tree's own digest, so it has no such section)."""
    metrics = evaluation.metrics
    lines = [
        f"# {campaign}: generation {index} ({backend_version(artifact)})",
        "",
        f"Evaluated on the **{evaluation.split}** split, {int(metrics['frames'])} structures.",
        "",
        "| quantity | RMSE | MAE |",
        "|---|---|---|",
        f"| energy (meV/atom) | {metrics['energy_rmse_mev_per_atom']:.3f} | {metrics['energy_mae_mev_per_atom']:.3f} |",
        f"| forces (meV/Å) | {metrics['forces_rmse_mev_per_angstrom']:.2f} | {metrics['forces_mae_mev_per_angstrom']:.2f} |",
        "",
        f"Energies are compared with the labels' {evaluation.energy_compared_with}: the energy the "
        "potential was fitted to.",
        "",
        *per_element_lines(evaluation),
        *uncertainty_lines(artifact),
        "## Training tool's own metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {key} | {value:.4g} |" for key, value in sorted(artifact.metrics.items())],
        "",
        "## Worst structures",
        "",
        "| frame | atoms | energy error (meV/atom) | force RMSE (meV/Å) |",
        "|---|---|---|---|",
        *[f"| {w['label']} | {w['atoms']} | {w['energy_error_mev_per_atom']:.2f} | "
          f"{w['forces_rmse_mev_per_angstrom']:.1f} |" for w in evaluation.worst_frames],
        "",
        *plot_lines(evaluation),
        "## Files",
        "",
        f"- block: `{block_name}` (PotentialGeneration)",
        *[f"- {role}: `{artifact.path(role).resolve()}`" for role in sorted(artifact.files)],
        f"- dataset digest: `{artifact.dataset_digest[:16]}`, potential digest: `{artifact.digest[:16]}`",
        *storage_lines(block),
    ]
    return "\n".join(lines) + "\n"


def storage_lines(block: PotentialGeneration | None) -> list[str]:
    """Where an uploaded generation is: `PotentialGeneration.load(name).download(dir)` fetches it anywhere."""
    if block is None or block.tree_url is None:
        return []
    return ["", "## In storage", "", f"- storage: `{block.storage}`",
            f"- generation directory (tree manifest): `{block.tree_url}`",
            *[f"- {role}: `{url}`" for role, url in sorted(block.objects.items())]]


PLOT_CAPTIONS = {"parity": "Parity: predicted vs reference", "errors": "Error histograms",
                 "gamma": "Extrapolation grade γ per structure and per atom"}


def plot_lines(evaluation: Evaluation) -> list[str]:
    """The evaluation's plots, shown inline as thumbnails (the UI cannot open files on the campaign's disk)."""
    lines = ["## Plots", ""] if evaluation.plots else []
    for name, path in evaluation.plots.items():
        lines += [f"### {PLOT_CAPTIONS.get(name, name)}", "", *markdown_image(name, path), ""]
    return lines


def uncertainty_lines(artifact: PotentialArtifact) -> list[str]:
    """Which species have no γ yet and why (none: no lines)."""
    if not artifact.species_without_gamma:
        return []
    return ["## Species without γ yet", "",
            "Their atoms are selected as uncertain, so the campaign labels more of them; a later generation "
            "with enough of their environments gets their active set.", "",
            "| element | why |", "|---|---|",
            *[f"| {element} | {why} |" for element, why in sorted(artifact.species_without_gamma.items())], ""]


def per_element_lines(evaluation: Evaluation) -> list[str]:
    """Force errors per element (a rare element's error hides in the overall RMSE)."""
    rows = evaluation.per_element
    if not rows:
        return []
    return ["## Forces per element", "", "| element | atoms | RMSE (meV/Å) | MAE (meV/Å) |", "|---|---|---|---|",
            *[f"| {element} | {row['atoms']} | {row['forces_rmse_mev_per_angstrom']:.2f} | "
              f"{row['forces_mae_mev_per_angstrom']:.2f} |" for element, row in sorted(rows.items())], ""]
