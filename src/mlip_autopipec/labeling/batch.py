"""Label a campaign's pending structures: claim, label each in a worker process, store or fail.

Rows are claimed one at a time, so `running` in the store means a worker is computing it and
several labelling processes can share one store. A failed row (crash, timeout, unusable labels)
is marked failed with the reason and sent back to pending while it has attempts left; it is
tried again in the same call. One structure failing never stops the others.

Crash recovery: a labelling process that dies (kill -9, lost node) leaves its rows `running`,
and nothing else will touch them. `label_pending(..., recover_running=True)` first sends every
`running` row of the campaign with attempts left back to pending. Use it only when no other
labeller is working on the campaign, or it would label their rows a second time.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.labeling.job import JobResult, LabelingError, label_structure
from mlip_autopipec.store import Status, StatusError, StoredStructure, StructureStore

DEFAULT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Attempt:
    """One try at labelling one structure."""

    structure_id: int
    attempt: int  # the store's attempt counter: 1 for the first try
    started: float  # Unix time
    seconds: float  # wall time: writing the job, worker start-up, calculation, reading back
    compute_seconds: float | None = None  # inside the calculator; None when it failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class LabelReport:
    labeler: str
    attempts: list[Attempt] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # row id -> last error, out of attempts
    retried: int = 0  # failures sent back to pending for another try
    recovered: list[int] = field(default_factory=list)  # rows a crashed labeller had left running

    @property
    def errors(self) -> list[str]:
        """Every failure message, retried ones included, in the order they happened."""
        return [attempt.error for attempt in self.attempts if attempt.error]

    def summary(self) -> str:
        text = (f"{self.labeler}: {len(self.completed)} completed, {len(self.failed)} failed, "
                f"{self.retried} retried")
        if self.recovered:
            text += f", {len(self.recovered)} recovered from a crashed run"
        done = [a for a in self.attempts if a.ok]
        if done:
            wall = sum(a.seconds for a in done) / len(done)
            compute = sum(a.compute_seconds for a in done) / len(done)
            text += f"; {wall:.2f} s per structure ({compute:.3f} s in the calculator)"
        return text

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): what a task returns and an artifact shows."""
        return {"labeler": self.labeler, "completed": len(self.completed), "failed": len(self.failed),
                "retried": self.retried, "recovered": len(self.recovered),
                "completed_ids": list(self.completed),
                "failures": {str(row_id): error for row_id, error in self.failed.items()},
                "errors": self.errors, "attempts": [asdict(a) for a in self.attempts],
                "summary": self.summary()}


def label_pending(
    store: StructureStore,
    spec: CalculatorSpec,
    *,
    limit: int | None = None,
    generation: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = 3,
    workers: int = 1,
    workdir: str | Path | None = None,
    recover_running: bool = False,
    keep_files: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> LabelReport:
    """Label pending rows of `store`'s campaign (of one `generation`, if given) with `spec`.

    limit          at most this many pending rows are taken; retries of those do not count
    timeout_s      per structure and attempt, worker start-up included; the worker is then killed
    max_attempts   tries per row over its lifetime (earlier calls count); failed rows with
                   attempts left, from earlier calls too, are tried again
    workers        worker processes computing at the same time
    workdir        job directories go to workdir/structure-<id>; default: labeling/<campaign>
                   beside a SQLite store
    recover_running  first send rows left `running` by a crashed labeller back to pending
    keep_files     keep the job directory of completed rows (failed ones are always kept)
    """
    if workers < 1 or max_attempts < 1 or timeout_s <= 0 or (limit is not None and limit < 0):
        raise ValueError(f"need workers >= 1, max_attempts >= 1, timeout_s > 0 and limit >= 0; got "
                         f"workers={workers}, max_attempts={max_attempts}, timeout_s={timeout_s}, "
                         f"limit={limit}")
    root = _job_root(store, workdir)
    report = LabelReport(labeler=spec.name)
    left_running = {row.id for row in store.select(Status.RUNNING)} if recover_running else set()
    requeued = store.requeue(max_attempts, include_running=recover_running)
    report.recovered = sorted(left_running.intersection(requeued))

    queue = _ClaimQueue(store, generation, limit)
    cancel = threading.Event()
    in_flight: dict[Future, StoredStructure] = {}
    # Worker threads only wait on their subprocess; every store call happens in this thread.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labeler") as pool:
        try:
            while True:
                while len(in_flight) < workers and (row := queue.next()) is not None:
                    in_flight[pool.submit(_attempt, row, spec, root, timeout_s, min_distance, cancel)] = row
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    row = in_flight.pop(future)
                    _record(store, spec, root, row, *future.result(), report, queue, max_attempts,
                            keep_files)
        except BaseException:
            # Interrupted (Ctrl-C, task cancellation): stop the workers, store what they finished
            # and fail the rest, so no row is left `running`.
            cancel.set()
            for future, row in in_flight.items():
                _record(store, spec, root, row, *future.result(), report, queue, max_attempts, keep_files)
            raise
    return report


class _ClaimQueue:
    """Claims pending rows one at a time, counting new rows against `limit` and retries apart."""

    def __init__(self, store: StructureStore, generation: int | None, limit: int | None):
        self._store = store
        self._generation = generation
        self._new_left = limit
        self._retries_owed = 0
        self._seen: set[int] = set()

    def next(self) -> StoredStructure | None:
        if self._new_left == 0 and self._retries_owed == 0:
            return None
        claimed = self._store.claim(1, generation=self._generation)
        if not claimed:
            return None
        row = claimed[0]
        if row.id in self._seen or self._new_left == 0:
            # A retry; or, past the limit, a row that took a retry's place in the queue.
            self._retries_owed = max(0, self._retries_owed - 1)
        elif self._new_left is not None:
            self._new_left -= 1
        self._seen.add(row.id)
        return row

    def owe_retries(self, requeued: list[int]) -> list[int]:
        """Of the rows a requeue sent back to pending, the ones this call should try again."""
        ours = [row_id for row_id in requeued if row_id in self._seen]
        self._retries_owed += len(ours)
        return ours


def _attempt(row: StoredStructure, spec: CalculatorSpec, root: Path, timeout_s: float,
             min_distance: float, cancel: threading.Event) -> tuple[Attempt, JobResult | None]:
    """Runs in a worker thread; never raises, so one structure cannot fail the batch."""
    number = int(row.provenance.get("attempts", 1))
    started, clock = time.time(), time.perf_counter()
    try:
        result = label_structure(row.frame.atoms, spec, _job_dir(root, row.id), timeout_s,
                                 min_distance=min_distance, cancel=cancel)
    except Exception as exc:  # LabelingError, or trouble writing the job files (disk full, ...)
        reason = str(exc) if isinstance(exc, LabelingError) else f"{type(exc).__name__}: {exc}"
        return Attempt(row.id, number, started, time.perf_counter() - clock,
                       error=f"structure {row.id} (attempt {number}): {reason}"), None
    return Attempt(row.id, number, started, time.perf_counter() - clock, result.compute_seconds), result


def _record(store: StructureStore, spec: CalculatorSpec, root: Path, row: StoredStructure,
            attempt: Attempt, result: JobResult | None, report: LabelReport, queue: _ClaimQueue,
            max_attempts: int, keep_files: bool) -> None:
    """Store the outcome of one attempt (in the calling thread) and requeue a failure with tries left."""
    if result is None:
        report.attempts.append(attempt)
        store.fail(row.id, attempt.error)
        report.failed[row.id] = attempt.error
        for row_id in queue.owe_retries(store.requeue(max_attempts)):
            report.failed.pop(row_id, None)
            report.retried += 1
        return
    try:
        store.complete(row.id, result.labels, labeler=spec.name, labeler_digest=spec.digest())
    except StatusError as exc:  # another labeller recovered this row and finished it meanwhile
        report.attempts.append(replace(attempt, compute_seconds=None,
                                       error=f"structure {row.id}: labels not stored: {exc}"))
        return
    report.attempts.append(attempt)
    report.completed.append(row.id)
    if not keep_files:
        shutil.rmtree(_job_dir(root, row.id), ignore_errors=True)


def _job_root(store: StructureStore, workdir: str | Path | None) -> Path:
    if workdir is not None:
        return Path(workdir)
    if store.is_server:
        raise ValueError("a server store has no directory to put job files beside: pass workdir")
    return Path(store.url).parent / "labeling" / re.sub(r"[^A-Za-z0-9._-]+", "-", store.campaign)


def _job_dir(root: Path, row_id: int) -> Path:
    return root / f"structure-{row_id}"
