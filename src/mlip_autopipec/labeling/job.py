"""Label one structure in a worker process, so a crashing or hanging calculator costs one job only.

The structure and the calculator spec go into a job directory, `python -m
mlip_autopipec.labeling.worker` computes the labels there in its own process group (the whole
group is killed on timeout or cancellation), and the result file is read back and validated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ase.io
import numpy as np
from ase import Atoms

from mlip_autopipec import processes
from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE, frame_problems
from mlip_autopipec.labeling.job_files import CALCULATOR_FILE, LOG_FILE, RESULT_FILE, STRUCTURE_FILE

_CANCEL_POLL_S = 0.2
_LOG_TAIL_LINES = 15
_LOG_TAIL_CHARS = 1200  # the store keeps 2000 characters of an error; leave room for the headline


class Cancellation(Protocol):
    """Anything that says the job should stop: a threading.Event, or a CancelFile across processes."""

    def is_set(self) -> bool: ...


class CancelFile:
    """A cancellation flag that other processes see (Dask workers too, on a shared filesystem):
    set once the file exists. Checked every few tenths of a second while a worker computes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()


class LabelingError(RuntimeError):
    """The calculator crashed, timed out, was cancelled or returned unusable labels."""


@dataclass(frozen=True)
class JobResult:
    labels: LabelledFrame
    compute_seconds: float  # inside the calculator; the rest of the wall time is worker overhead


def label_structure(atoms: Atoms, spec: CalculatorSpec, job_dir: str | os.PathLike, timeout_s: float,
                    min_distance: float = DEFAULT_MIN_DISTANCE,
                    cancel: Cancellation | None = None, launcher: Sequence[str] = ()) -> JobResult:
    """Label `atoms` with `spec` in a worker process; raise LabelingError with the reason if it fails.

    `timeout_s` bounds the whole job, interpreter start-up included. Setting `cancel` (from another
    thread, or another process for a CancelFile) kills the worker as a timeout would. A `module:callable` calculator must be importable
    from the caller's working directory or PYTHONPATH.
    """
    # A broken geometry (overlapping atoms, degenerate cell) would only waste a DFT run.
    broken = [f"{field}: {message}" for field, message in
              frame_problems(LabelledFrame(atoms, None, None), min_distance=min_distance)
              if field not in ("energy", "forces")]
    if broken:
        raise LabelingError("structure not labelled, its geometry is unusable: " + "; ".join(broken))
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / RESULT_FILE).unlink(missing_ok=True)  # a result from an earlier attempt must not count
    ase.io.write(job_dir / STRUCTURE_FILE, atoms, format="traj")
    (job_dir / CALCULATOR_FILE).write_text(spec.model_dump_json())

    run_worker("mlip_autopipec.labeling.worker", job_dir, spec.name, timeout_s, cancel, launcher=launcher)
    return _read_result(job_dir / RESULT_FILE, atoms, spec, min_distance, job_dir / LOG_FILE)


def run_worker(module: str, job_dir: Path, name: str, timeout_s: float,
               cancel: Cancellation | None = None, on_line: Callable[[str], None] | None = None,
               launcher: Sequence[str] = ()) -> None:
    """`python -m module JOB_DIR --parent PID` in `job_dir`, output to its worker.log: the one way
    every labelling job runs (single structures, the held-out MD). Raises LabelingError naming
    `name` when it times out, is cancelled or exits non-zero, with the log's tail. `on_line` sees
    the worker's output lines while it runs (progress). `launcher` prefixes the command line: an MPI
    launcher (`mpiexec -n 2`, `srun`) runs the worker as that many ranks."""
    log_path = job_dir / LOG_FILE
    with open(log_path, "wb") as log:
        # Own process group; the worker watches this process itself (processes.watch_parent) so
        # that its whole group (MPI ranks of a DFT code) dies with a killed campaign.
        process = processes.start(
            [*launcher, sys.executable, "-m", module, str(job_dir.resolve()), "--parent", str(os.getpid())],
            cwd=job_dir, stdout=log, stderr=subprocess.STDOUT, env=_worker_environment(), die_with_parent=False,
        )
    try:
        stopped = _wait(process, timeout_s, cancel, None if on_line is None else _LogFollower(log_path, on_line))
    finally:
        if process.poll() is None:  # interrupted while waiting (Ctrl-C in a single-threaded caller)
            _terminate_group(process)
        processes.kill_group(process)  # whatever the worker left behind: MPI ranks, helper daemons
    if stopped is not None:
        raise LabelingError(f"{name} {stopped}; the worker was killed{_tail(log_path)}")
    if process.returncode != 0:
        raise LabelingError(f"{name} worker {processes.exit_reason(process.returncode)}{_tail(log_path)}")


def _worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The worker imports `module:callable` calculators the way the caller would from its directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # an abort must not swallow what the calculator printed
    return env


def _wait(process: subprocess.Popen, timeout_s: float, cancel: Cancellation | None,
          watch: Callable[[], None] | None = None) -> str | None:
    """Wait for the worker; return why it had to be stopped (timeout, cancelled) or None if it exited.
    `watch` (if given) is called every poll while it runs, and once more at the end."""
    deadline = time.monotonic() + timeout_s
    poll = cancel is not None or watch is not None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _terminate_group(process)
                return f"timed out after {timeout_s:g} s"
            if cancel is not None and cancel.is_set():
                _terminate_group(process)
                return "was cancelled"
            if watch is not None:
                watch()
            try:
                process.wait(timeout=min(remaining, _CANCEL_POLL_S) if poll else remaining)
                return None
            except subprocess.TimeoutExpired:
                continue
    finally:
        if watch is not None:
            watch()


class _LogFollower:
    """Hands each new complete line of a growing log file to `on_line`."""

    def __init__(self, path: Path, on_line: Callable[[str], None]):
        self.path, self.on_line, self.offset, self.partial = path, on_line, 0, ""

    def __call__(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except OSError:
            return
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self.on_line(line)


def _terminate_group(process: subprocess.Popen) -> None:
    processes.stop(process)  # SIGTERM, processes.DEFAULT_GRACE_S for an MPI launcher to stop its ranks, SIGKILL


def _read_result(path: Path, atoms: Atoms, spec: CalculatorSpec, min_distance: float,
                 log_path: Path) -> JobResult:
    try:
        result = json.loads(path.read_text())
        labels = LabelledFrame(
            atoms=atoms,
            energy=float(result["energy"]),
            forces=np.asarray(result["forces"], dtype=float),
            stress=None if result.get("stress") is None else np.asarray(result["stress"], dtype=float),
        )
    except FileNotFoundError:
        raise LabelingError(f"{spec.name} worker exited without writing {path.name}"
                            f"{_tail(log_path)}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LabelingError(f"{spec.name} worker wrote an unreadable {path.name}: {exc}") from None
    problems = frame_problems(labels, min_distance=min_distance)
    if problems:
        raise LabelingError(f"{spec.name} returned unusable labels: "
                            + "; ".join(f"{field}: {message}" for field, message in problems))
    return JobResult(labels, float(result.get("compute_seconds", float("nan"))))


def _tail(log_path: Path) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            tail = "".join(deque(handle, maxlen=_LOG_TAIL_LINES)).strip()
    except OSError:
        return ""
    if not tail:
        return " (worker log is empty)"
    return f"; worker log ({log_path}) ends:\n{tail[-_LOG_TAIL_CHARS:]}"
