"""Ingest labelled data: read, validate every frame, store the good ones as completed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlip_autopipec.data.export import ExportItem
from mlip_autopipec.data.problems import FrameProblem
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE, frame_problems
from mlip_autopipec.store.harvest import export_items, harvest_for_export
from mlip_autopipec.store.structure_store import NewStructure, Status, StoredStructure, StructureStore


@dataclass
class FileIngestReport:
    file: str
    accepted: int = 0
    duplicates: int = 0
    problems: list[FrameProblem] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Frames rejected (a frame with several problems counts once)."""
        return len({problem.frame for problem in self.problems})


@dataclass
class IngestReport:
    files: list[FileIngestReport] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(f.accepted for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def problems(self) -> list[FrameProblem]:
        return [p for f in self.files for p in f.problems]

    def summary(self) -> str:
        lines = [f"{'file':<48} {'accepted':>8} {'duplicate':>9} {'rejected':>8}"]
        for report in self.files:
            lines.append(f"{_shorten(report.file, 48):<48} {report.accepted:>8} "
                         f"{report.duplicates:>9} {report.rejected:>8}")
        lines.append(f"{'total':<48} {self.accepted:>8} {self.duplicates:>9} {self.rejected:>8}")
        return "\n".join(lines)


@dataclass
class IngestedForExport:
    """What `ingest_for_export` did and the export items of the campaign's completed rows."""

    report: IngestReport
    items: list[ExportItem]
    harvested: bool  # the items were read back from the store: it held other completed rows


def ingest_file(
    store: StructureStore,
    path: str | os.PathLike,
    source: str = "ingest",
    generation: int = 0,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    allowed_elements: set[str] | None = None,
) -> FileIngestReport:
    """Store every valid frame of `path` as completed, in one transaction for the whole file.

    Invalid frames are reported with file, frame index and field, and skipped; the valid
    frames of the same file still go in.
    """
    return _ingest(store, path, source, generation, min_distance, allowed_elements, keep_rows=False)[0]


def ingest_for_export(
    store: StructureStore,
    paths: Sequence[str | os.PathLike],
    source: str = "ingest",
    generation: int = 0,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    allowed_elements: set[str] | None = None,
) -> IngestedForExport:
    """`ingest_file` on each of `paths` in turn, then the items `harvest_for_export(store)` gives.

    When the campaign's completed rows are exactly the rows these files added (it had none before,
    and no other process completed one meanwhile: rows never leave completed), the items are built
    from the rows as written instead of read back, in the same (id) order with the same split keys.
    """
    report = IngestReport()
    added: list[StoredStructure] = []
    keep_rows = store.status_counts()[Status.COMPLETED.value] == 0  # else they will be read back anyway
    for path in paths:
        file_report, rows = _ingest(store, path, source, generation, min_distance, allowed_elements, keep_rows)
        report.files.append(file_report)
        added.extend(rows)
    if keep_rows and store.status_counts()[Status.COMPLETED.value] == len(added):
        return IngestedForExport(report, export_items(added, store), harvested=False)
    return IngestedForExport(report, harvest_for_export(store), harvested=True)


def _ingest(store: StructureStore, path: str | os.PathLike, source: str, generation: int,
            min_distance: float, allowed_elements: set[str] | None,
            keep_rows: bool) -> tuple[FileIngestReport, list[StoredStructure]]:
    """The ingest of one file; with `keep_rows`, also the rows it added (`StructureStore.add`)."""
    report = FileIngestReport(file=str(path))
    good: list[NewStructure] = []
    for index, item in read_labelled_frames(path):
        if isinstance(item, FrameProblem):
            report.problems.append(item)
            continue
        found = frame_problems(item, min_distance, allowed_elements)
        if found:
            report.problems.extend(FrameProblem(str(path), index, fld, msg) for fld, msg in found)
            continue
        good.append(NewStructure(frame=item, source=source, status=Status.COMPLETED,
                                 generation=generation, origin=f"{Path(path).name}:{index}",
                                 labeler="reference", labeler_digest="ingested"))
    if not good:
        return report, []
    outcomes = store.add(good, keep_rows=keep_rows)
    report.accepted = sum(o.added for o in outcomes)
    report.duplicates = len(outcomes) - report.accepted
    return report, [o.stored for o in outcomes if o.stored is not None]


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
