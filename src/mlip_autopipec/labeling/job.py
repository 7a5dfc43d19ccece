"""Label one structure in a worker process, so a crashing or hanging calculator costs one job only.

The structure and the calculator spec go into a job directory, `python -m
mlip_autopipec.labeling.worker` computes the labels there in its own process group (the whole
group is killed on timeout or cancellation), and the result file is read back and validated.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlip_autopipec import processes
from mlip_autopipec.processes import Cancellation
from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE, frame_problems
from mlip_autopipec.labeling.job_files import CALCULATOR_FILE, LOG_FILE, RESULT_FILE, STRUCTURE_FILE

_LOG_TAIL_LINES = 15
_LOG_TAIL_CHARS = 1200  # the store keeps 2000 characters of an error; leave room for the headline


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
    thread, or another process for a CancelFile) kills the worker as a timeout would. A
    `module:callable` calculator must be importable from the caller's working directory or PYTHONPATH.
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
    # Not die_with_parent: the worker watches this process itself (processes.watch_parent) so that
    # its whole group (MPI ranks of a DFT code) dies with a killed campaign.
    ended = processes.run_logged(
        [*launcher, sys.executable, "-m", module, str(job_dir.resolve()), "--parent", str(os.getpid())],
        log_path, timeout_s, cwd=job_dir, env=_worker_environment(), append=False, on_line=on_line, cancel=cancel,
        die_with_parent=False)
    if ended.stopped is not None:
        raise LabelingError(f"{name} {ended.stopped}; the worker was killed{_tail(log_path)}")
    if ended.returncode != 0:
        raise LabelingError(f"{name} worker {ended.reason}{_tail(log_path)}")


def _worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The worker imports `module:callable` calculators the way the caller would from its directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # an abort must not swallow what the calculator printed
    return env


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
