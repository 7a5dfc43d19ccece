"""The run directory: append-only JSON-lines logs, the npz structure store, and resume repair.

    RUN_DIR/steps.jsonl       one line per attempted step (the step_trace recorder); the commit record
    RUN_DIR/basins.jsonl      one line per basin found (basin_registry recorder); step null = the start
    RUN_DIR/dft_queue.jsonl   triggered candidates, readable by `python -m flows.outbox --queue`
    RUN_DIR/structures/       <step id>.npz (the action's structure, its forces, the quenched positions)

A step writes its npz (atomically), then its basin and candidate lines, and its steps.jsonl line
last: a step exists once that line does. Lines are appended whole in one write. After a kill,
`repair` drops a torn last line and everything a step wrote without reaching its steps.jsonl line,
so resuming never duplicates an id, a line or a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlip_autopipec.files import atomic_write_text

STEPS_FILE = "steps.jsonl"
BASINS_FILE = "basins.jsonl"
QUEUE_FILE = "dft_queue.jsonl"
STRUCTURES_DIR = "structures"
INITIAL_STRUCTURE = "initial.npz"


def step_structure_name(step: int) -> str:
    return f"{step:06d}.npz"


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line with a single write, so a kill leaves either all of it or a torn tail."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict]:
    """Every complete JSON line; a torn last line (no newline, or not JSON) is left out."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is torn or empty
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not JSON ({exc}); the file was edited or corrupted") from None
    return records


def _rewrite(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


def repair(run_dir: Path) -> list[dict]:
    """Make the run directory consistent with its committed steps; returns those steps' records."""
    steps_path = run_dir / STEPS_FILE
    steps = read_lines(steps_path)
    for index, record in enumerate(steps):
        if record.get("id") != index:
            raise ValueError(f"{steps_path}: line {index + 1} has id {record.get('id')!r}, expected {index}")
    if _torn(steps_path):
        _rewrite(steps_path, steps)
    last = len(steps) - 1
    for name in (BASINS_FILE, QUEUE_FILE):
        path = run_dir / name
        if not path.exists():
            continue
        records = read_lines(path)
        kept = [r for r in records if r.get("step") is None or r["step"] <= last]
        if len(kept) != len(records) or _torn(path):
            _rewrite(path, kept)
    structures = run_dir / STRUCTURES_DIR
    if structures.is_dir():
        for path in structures.glob("*.npz"):
            if path.stem.isdigit() and int(path.stem) > last:
                path.unlink()
    return steps


def _torn(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"
