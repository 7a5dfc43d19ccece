"""Labels from an MD run with the labeler itself (the default held-out set), through the same
worker path as every other label: a worker process of its own (labeling/md_worker.py), killed
with its group at the time limit, tried again up to `max_attempts`, every failure reported.
The snapshots keep the energy and forces the MD computed: nothing is labelled twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
from ase import Atoms

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE, frame_problems
from mlip_autopipec.exploration.md import WalkerSettings
from mlip_autopipec.labeling.job import Cancellation, LabelingError, run_worker
from mlip_autopipec.labeling.job_files import CALCULATOR_FILE, STRUCTURE_FILE, TRAJECTORY_FILE, WALKER_FILE


_STEP_LINE = re.compile(r"step (\d+)/(\d+)")  # what md_worker prints at every recorded snapshot


@dataclass
class MdLabels:
    frames: list[LabelledFrame] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # snapshots whose labels are unusable, with why
    errors: list[str] = field(default_factory=list)  # every failed attempt, in order
    attempts: int = 0


def label_by_md(structure: Atoms, spec: CalculatorSpec, walker: WalkerSettings, job_dir: str | os.PathLike,
                timeout_s: float, max_attempts: int = 1, min_distance: float = DEFAULT_MIN_DISTANCE,
                cancel: Cancellation | None = None,
                on_attempt: Callable[[int, str | None], None] | None = None,
                on_step: Callable[[int, int], None] | None = None) -> MdLabels:
    """Run `walker` from `structure` with the labeler `spec` in a worker process; return the
    recorded snapshots with their labels. A failed attempt (crash, exception, `timeout_s`) is
    retried up to `max_attempts` tries in all; when all fail, LabelingError carries every reason.
    `on_attempt(number, error or None)` sees each attempt end, `on_step(done, total)` the MD's
    progress at every recorded snapshot while it runs."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    ase.io.write(job_dir / STRUCTURE_FILE, structure, format="traj")
    (job_dir / CALCULATOR_FILE).write_text(spec.model_dump_json())
    (job_dir / WALKER_FILE).write_text(json.dumps(asdict(walker)))
    result = MdLabels()
    for attempt in range(1, max_attempts + 1):
        result.attempts = attempt
        (job_dir / TRAJECTORY_FILE).unlink(missing_ok=True)  # an earlier attempt's output must not count
        try:
            run_worker("mlip_autopipec.labeling.md_worker", job_dir, f"{spec.name} MD", timeout_s, cancel,
                       on_line=None if on_step is None else lambda line: _step(line, on_step))
            snapshots = ase.io.read(job_dir / TRAJECTORY_FILE, ":")
        except (LabelingError, OSError, ValueError) as exc:
            error = f"attempt {attempt}: {exc}"
            result.errors.append(error)
            if on_attempt is not None:
                on_attempt(attempt, error)
            continue
        for index, atoms in enumerate(snapshots):
            frame = LabelledFrame.from_atoms(atoms)
            problems = frame_problems(frame, min_distance=min_distance)
            if problems:
                result.rejected.append(f"{job_dir / TRAJECTORY_FILE} frame {index}: "
                                       + "; ".join(f"{key}: {message}" for key, message in problems))
            else:
                result.frames.append(frame)
        if on_attempt is not None:
            on_attempt(attempt, None)
        return result
    raise LabelingError(f"{spec.name} MD in {job_dir} failed {max_attempts} time(s): " + " | ".join(result.errors))


def _step(line: str, on_step: Callable[[int, int], None]) -> None:
    match = _STEP_LINE.fullmatch(line.strip())
    if match:
        on_step(int(match[1]), int(match[2]))


__all__ = ["MdLabels", "label_by_md"]
