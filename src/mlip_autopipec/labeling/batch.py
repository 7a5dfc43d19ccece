"""Label a campaign's pending structures: claim, label each in a worker process, store or fail.

The work splits in three, so any executor can do the middle part:

* `LabelingRun` (the caller's process) claims pending rows one at a time, so `running` in the
  store means a worker is computing it and several labelling processes can share one store. It
  counts rows against `limit`, sends failures with attempts left back to pending (they are tried
  again in the same call) and builds the `LabelReport`.
* `label_claimed` (anywhere that reaches the store and the job directory: a thread, a Dask worker
  on another node) labels one claimed row in its own worker process and stores the outcome:
  labels (completed) or the reason (failed). A failing structure never raises.
* `fan_out` keeps `workers` rows in flight on an executor: `label_pending` uses a thread pool;
  flows/label.py submits Prefect tasks to the flow's task runner (threads or Dask).

A fixed labeler: a failed row records the digest of the labeler that failed it. When a later call
labels with a different labeler (a typo fixed, other settings), those rows become pending again
with their attempts reset, and the report says so (`reset`); `retry_failed=True` does that for
every failed row, whatever labeler failed it.

Crash recovery: a labelling process that dies (kill -9, lost node) leaves its rows `running`,
and nothing else will touch them. `recover_running=True` first sends every `running` row of the
campaign with attempts left back to pending. Use it only when no other labeller is working on the
campaign, or it would label their rows a second time.
"""

from __future__ import annotations

import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.labeling.job import Cancellation, LabelingError, label_structure
from mlip_autopipec.store import Status, StatusError, StructureStore

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
    stored: bool = True  # False: another labeller finished the row meanwhile, this outcome was dropped

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
    reset: list[int] = field(default_factory=list)  # failed rows made pending again, attempts reset
    reset_reason: str = ""
    jobs: list[dict] = field(default_factory=list)  # batch jobs (SLURM): id, name, final state, structures

    @property
    def errors(self) -> list[str]:
        """Every failure message, retried ones included, in the order they happened."""
        return [attempt.error for attempt in self.attempts if attempt.error]

    def summary(self) -> str:
        text = (f"{self.labeler}: {len(self.completed)} completed, {len(self.failed)} failed, "
                f"{self.retried} retried")
        if self.recovered:
            text += f", {len(self.recovered)} recovered from a crashed run"
        if self.reset:
            text += f"; {len(self.reset)} failed structures were made pending again ({self.reset_reason})"
        done = [a for a in self.attempts if a.ok]
        if done:
            wall = sum(a.seconds for a in done) / len(done)
            compute = sum(a.compute_seconds for a in done) / len(done)
            text += f"; {wall:.2f} s per structure ({compute:.3f} s in the calculator)"
        return text



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
    retry_failed: bool = False,
    keep_files: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> LabelReport:
    """Label pending rows of `store`'s campaign (of one `generation`, if given) with `spec`.

    limit          at most this many pending rows are taken; retries of those do not count
    timeout_s      per structure and attempt, worker start-up included; the worker is then killed
    max_attempts   tries per row over its lifetime (earlier calls count); failed rows with
                   attempts left, from earlier calls too, are tried again
    workers        worker processes computing at the same time (one thread waits on each)
    workdir        job directories go to workdir/structure-<id>; default: labeling/<campaign>
                   beside a SQLite store
    recover_running  first send rows left `running` by a crashed labeller back to pending
    retry_failed   first make every failed row pending again with its attempts reset (rows a
                   different labeler failed are always made pending again)
    keep_files     keep the job directory of completed rows (failed ones are always kept)
    """
    check_settings(workers=workers, timeout_s=timeout_s)
    root = job_root(store, workdir)
    run = LabelingRun(store, spec, limit=limit, generation=generation, max_attempts=max_attempts,
                      recover_running=recover_running, retry_failed=retry_failed)
    cancel = threading.Event()

    def label_in_thread(row_id: int) -> Attempt:
        # A store object holds one connection at a time: each thread opens its own.
        return label_claimed(StructureStore(store.url, campaign=store.campaign), row_id, spec, root,
                             timeout_s=timeout_s, min_distance=min_distance, keep_files=keep_files,
                             cancel=cancel)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labeler") as pool:
        return fan_out(run, lambda row_id: pool.submit(label_in_thread, row_id), workers,
                       on_interrupt=cancel.set)


def check_settings(*, workers: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, max_attempts: int = 3,
                   limit: int | None = None) -> None:
    """Refuse nonsense before anything is claimed."""
    if workers < 1 or max_attempts < 1 or timeout_s <= 0 or (limit is not None and limit < 0):
        raise ValueError(f"need workers >= 1, max_attempts >= 1, timeout_s > 0 and limit >= 0; got "
                         f"workers={workers}, max_attempts={max_attempts}, timeout_s={timeout_s}, "
                         f"limit={limit}")


class LabelingRun:
    """One labelling call's bookkeeping in the caller's process: claims, retries, the report.

    Rows are claimed one at a time (`claim`), so only rows a worker is about to compute are
    `running`. Each outcome goes to `record`; a unit of work that never came back (its Prefect
    task crashed, its Dask worker died) goes to `lost`.
    """

    def __init__(self, store: StructureStore, spec: CalculatorSpec, *, limit: int | None = None,
                 generation: int | None = None, max_attempts: int = 3, recover_running: bool = False,
                 retry_failed: bool = False):
        check_settings(max_attempts=max_attempts, limit=limit)
        self.store = store
        self.spec = spec
        self.max_attempts = max_attempts
        self.report = LabelReport(labeler=spec.name)
        self.report.reset = store.reset_failed(None if retry_failed else spec.digest())
        if self.report.reset:
            self.report.reset_reason = ("retry failed was asked for" if retry_failed else
                                        f"the labeler changed since they failed, now {spec.name} "
                                        f"digest {spec.digest()}")
        left_running = {row.id for row in store.select(Status.RUNNING)} if recover_running else set()
        requeued = store.requeue(max_attempts, include_running=recover_running)
        self.report.recovered = sorted(left_running.intersection(requeued))
        self._generation = generation
        self._new_left = limit
        self._retries_owed = 0
        self._seen: set[int] = set()

    def claim(self) -> int | None:
        """Claim the next row to label (now `running`), or None when this call has nothing left."""
        if self._new_left == 0 and self._retries_owed == 0:
            return None
        claimed = self.store.claim(1, generation=self._generation)
        if not claimed:
            return None
        row_id = claimed[0].id
        if row_id in self._seen or self._new_left == 0:
            # A retry; or, past the limit, a row that took a retry's place in the queue.
            self._retries_owed = max(0, self._retries_owed - 1)
        elif self._new_left is not None:
            self._new_left -= 1
        self._seen.add(row_id)
        return row_id

    def record(self, attempt: Attempt) -> None:
        """Count an outcome that `label_claimed` stored; send a failure with tries left back to pending."""
        report = self.report
        report.attempts.append(attempt)
        if attempt.ok:
            report.completed.append(attempt.structure_id)
        elif attempt.stored:
            report.failed[attempt.structure_id] = attempt.error
            for row_id in self.store.requeue(self.max_attempts):
                if row_id in self._seen:  # ours to try again in this call
                    self._retries_owed += 1
                    report.failed.pop(row_id, None)
                    report.retried += 1

    def lost(self, row_id: int, reason: str) -> None:
        """The unit labelling `row_id` never reported back: fail the row, unless it got recorded anyway."""
        row = self.store.get(row_id)
        number = int(row.provenance.get("attempts", 1))
        error = f"structure {row_id} (attempt {number}): {reason}"
        if row.status is not Status.RUNNING:  # its worker stored the outcome before it went away
            self.report.attempts.append(Attempt(row_id, number, time.time(), 0.0, error=error, stored=False))
            return
        self.store.fail(row_id, error, labeler_digest=self.spec.digest())
        self.record(Attempt(row_id, number, time.time(), 0.0, error=error))


class _FutureLike(Protocol):
    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...

    def result(self) -> Attempt | dict: ...


def fan_out(run: LabelingRun, submit: Callable[[int], _FutureLike], workers: int,
            on_interrupt: Callable[[], None]) -> LabelReport:
    """Keep `workers` claimed rows in flight through `submit(row_id)` until the run has none left.

    `submit` returns a future (concurrent.futures, or a Prefect future on any task runner) whose
    result is `label_claimed`'s Attempt or its dict. Interrupted (Ctrl-C, task cancellation), it
    calls `on_interrupt` (which must make the units stop soon, e.g. set their cancellation), waits
    for what is in flight, records it and re-raises, so no row is left `running`.
    """
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()
    in_flight: dict[int, _FutureLike] = {}
    try:
        while True:
            while len(in_flight) < workers and (row_id := run.claim()) is not None:
                future = in_flight[row_id] = submit(row_id)
                future.add_done_callback(lambda _, row_id=row_id: finished.put(row_id))
            if not in_flight:
                return run.report
            row_id = finished.get()
            _collect(run, row_id, in_flight.pop(row_id))
    except BaseException:
        on_interrupt()
        for row_id, future in in_flight.items():
            _collect(run, row_id, future)  # waits for it
        raise


def _collect(run: LabelingRun, row_id: int, future: _FutureLike) -> None:
    try:
        outcome = future.result()
    except BaseException as exc:  # the unit itself died: task crash, lost Dask worker, cancellation
        run.lost(row_id, f"the labelling task did not finish: {type(exc).__name__}: {exc}")
        return
    run.record(outcome)


def label_claimed(store: StructureStore, row_id: int, spec: CalculatorSpec, root: str | Path, *,
                  timeout_s: float = DEFAULT_TIMEOUT_S, min_distance: float = DEFAULT_MIN_DISTANCE,
                  keep_files: bool = False, cancel: Cancellation | None = None) -> Attempt:
    """Label a row the caller claimed (status `running`) in a worker process and store the outcome.

    Completed: the labels are stored and the job directory root/structure-<id> removed (unless
    `keep_files`). Failed (crash, timeout, cancellation, unusable labels, trouble writing the
    job): the row is marked failed with the reason, the job directory kept. Never raises for a
    failing structure, so one structure cannot fail a batch; store errors do raise.
    """
    row = store.get(row_id)
    number = int(row.provenance.get("attempts", 1))
    job_dir = Path(root) / f"structure-{row_id}"
    started, clock = time.time(), time.perf_counter()
    try:
        result = label_structure(row.frame.atoms, spec, job_dir, timeout_s, min_distance=min_distance,
                                 cancel=cancel)
    except Exception as exc:  # LabelingError, or trouble writing the job files (disk full, ...)
        reason = str(exc) if isinstance(exc, LabelingError) else f"{type(exc).__name__}: {exc}"
        error = f"structure {row_id} (attempt {number}): {reason}"
        store.fail(row_id, error, labeler_digest=spec.digest())
        return Attempt(row_id, number, started, time.perf_counter() - clock, error=error)
    seconds = time.perf_counter() - clock
    try:
        store.complete(row_id, result.labels, labeler=spec.name, labeler_digest=spec.digest())
    except StatusError as exc:  # another labeller recovered this row and finished it meanwhile
        return Attempt(row_id, number, started, seconds, error=f"structure {row_id}: labels not stored: {exc}",
                       stored=False)
    if not keep_files:
        shutil.rmtree(job_dir, ignore_errors=True)
    return Attempt(row_id, number, started, seconds, result.compute_seconds)


def job_root(store: StructureStore, workdir: str | Path | None) -> Path:
    """Where job directories go: `workdir`, or labeling/<campaign> beside a SQLite store."""
    if workdir is not None:
        return Path(workdir)
    if store.is_server:
        raise ValueError("a server store has no directory to put job files beside: pass workdir")
    return Path(store.url).parent / "labeling" / re.sub(r"[^A-Za-z0-9._-]+", "-", store.campaign)
