"""Tasks over the structure store: ingest files, harvest and export a dataset."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict

from mlip_autopipec.data.export import ExportItem, check_export_target, export_dataset
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.harvest import harvest_for_export
from mlip_autopipec.store.ingest import FileIngestReport, IngestReport, ingest_file, ingest_for_export
from mlip_autopipec.store.secrets import redact


@task(task_run_name="ingest {path}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=lambda task, run, state: _is_database_busy(state))
def ingest_file_task(store_url: str, path: str, campaign: str, source: str, generation: int,
                     min_distance: float) -> FileIngestReport:
    store = StructureStore(store_url, campaign=campaign)
    return ingest_file(store, path, source=source, generation=generation, min_distance=min_distance)


class ExportedDataset(BaseModel):
    """What flows pass on about an exported dataset: its manifest, digest and size."""

    model_config = ConfigDict(frozen=True)

    manifest: str  # manifest.json
    digest: str
    counts: dict[str, int]  # frames per split
    elements: list[str]


@task(task_run_name="export {out_dir}")
def export_task(store_url: str, campaign: str, out_dir: str, test_fraction: float, seed: int,
                formats: list[str], generation: int | None = None, max_generation: int | None = None,
                source: str | None = None, overwrite: bool = False) -> ExportedDataset:
    """Harvest completed rows and export them; returns the manifest path and digest."""
    store = StructureStore(store_url, campaign=campaign)
    items = harvest_for_export(store, generation=generation, max_generation=max_generation, source=source)
    return _export(items, store_url, campaign, out_dir, test_fraction, seed, formats, generation=generation,
                   max_generation=max_generation, source=source, overwrite=overwrite)


@task(task_run_name="ingest and export {out_dir}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=lambda task, run, state: _is_database_busy(state))
def ingest_and_export_task(store_url: str, paths: list[str], campaign: str, source: str, generation: int,
                           min_distance: float, out_dir: str, test_fraction: float, seed: int,
                           formats: list[str], overwrite: bool = False) -> tuple[IngestReport, ExportedDataset]:
    """`ingest_file_task` on each file, then `export_task` of all completed rows: the same store and the
    same dataset, byte for byte, without reading back the rows just written when the campaign holds no
    others (`ingest_for_export`). An `out_dir` that export would refuse is refused before any ingest."""
    check_export_target(out_dir, overwrite)
    store = StructureStore(store_url, campaign=campaign)
    ingested = ingest_for_export(store, paths, source=source, generation=generation, min_distance=min_distance)
    dataset = _export(ingested.items, store_url, campaign, out_dir, test_fraction, seed, formats,
                      overwrite=overwrite)
    return ingested.report, dataset


def _export(items: list[ExportItem], store_url: str, campaign: str, out_dir: str, test_fraction: float,
            seed: int, formats: list[str], generation: int | None = None, max_generation: int | None = None,
            source: str | None = None, overwrite: bool = False) -> ExportedDataset:
    """Export `items`, harvested from the store with these filters, and show the manifest as an artifact."""
    manifest = export_dataset(items, out_dir, test_fraction=test_fraction, seed=seed, formats=formats,
                              source={"store": redact(store_url), "campaign": campaign,
                                      "generation": generation, "max_generation": max_generation,
                                      "source": source}, overwrite=overwrite)
    publish_manifest(manifest)
    return ExportedDataset(manifest=str(manifest.directory / "manifest.json"), digest=manifest.digest,
                           counts=dict(manifest.counts), elements=list(manifest.elements))


def publish_manifest(manifest: DatasetManifest) -> None:
    create_table_artifact(
        key="dataset-export",
        table=[{"file": f.path, "format": f.format, "split": f.split, "frames": f.frames,
                "atoms": f.atoms, "sha256": f.sha256[:16]} for f in manifest.files],
        description=f"Dataset {manifest.digest[:12]}: {manifest.counts['train']} train / "
                    f"{manifest.counts['test']} test frames, elements {', '.join(manifest.elements)}",
    )


def _is_database_busy(state) -> bool:
    try:
        state.result()
    except Exception as exc:  # only a locked database is worth retrying; bad data is not
        return "database is locked" in str(exc)
    return False
