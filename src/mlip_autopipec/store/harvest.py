"""Harvest: the completed rows of a campaign, ready for export with their split groups."""

from __future__ import annotations

from collections.abc import Sequence

from mlip_autopipec.data.export import ExportItem
from mlip_autopipec.store.structure_store import StoredStructure, StructureStore


def harvest_for_export(store: StructureStore, generation: int | None = None, source: str | None = None,
                       max_generation: int | None = None) -> list[ExportItem]:
    """Completed rows as export items (`export_items`), in id order."""
    rows = store.harvest(generation=generation, source=source, max_generation=max_generation)
    return export_items(rows, store)


def export_items(rows: Sequence[StoredStructure], store: StructureStore) -> list[ExportItem]:
    """Rows as export items; a row derived from a parent is grouped under the parent's fingerprint,
    so the split never separates relatives and never depends on row ids. The store's fingerprints
    are read only when a row has a parent."""
    fingerprint_by_id = ({row_id: print_ for print_, row_id in store.fingerprints().items()}
                         if any(row.parent is not None for row in rows) else {})
    return [
        ExportItem(frame=row.frame,
                   group=fingerprint_by_id.get(row.parent, f"row-{row.parent}")
                   if row.parent is not None else row.fingerprint)
        for row in rows
    ]
