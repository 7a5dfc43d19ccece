"""The DFT outbox: canonicalize candidates, drop duplicates, queue the rest for DFT.

Candidates are deduplicated against each other (first one wins), against the queue already
submitted by earlier runs (`dft_submit.jsonl`) and against every row of the store's campaign.
Exact duplicates share a fingerprint (`store.fingerprint`; the store records each row's, so its
rows are not fingerprinted again on every run). A near duplicate within `tolerance` Å has an
equivalent cell, translation and same-species permutation under which every atom lies within
`tolerance` of its partner (see `match`): pairs are proposed by the species-resolved descriptor
prefilter (`descriptor`, which never misses such a pair) and each skip is confirmed by
`match.find_match`, so a distinct structure is never skipped. Survivors are appended to `dft_submit.jsonl`
(the whole file is rewritten atomically, so a crash never leaves a half-written line) and enter the
store as `pending`; this run's skips are written to `dft_skip.jsonl` with the reason (`exact` or
`near`) and what they duplicate (`submitted:<id>`, `store:<row id>` or a candidate id of this run).
Running the same candidates again submits nothing new.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.outbox.descriptor import composition_key, descriptor, near_pairs, prefilter_threshold
from mlip_autopipec.outbox.match import find_match
from mlip_autopipec.store.fingerprint import DEFAULT_TOLERANCE, canonicalize, fingerprint

SUBMIT_FILE = "dft_submit.jsonl"
SKIP_FILE = "dft_skip.jsonl"
DEFAULT_NEAR_TOLERANCE = 0.05  # Å: every atom of a near duplicate lies this close to its partner


@dataclass
class Candidate:
    id: str
    atoms: Atoms
    origin: str | None = None


@dataclass
class OutboxReport:
    submitted: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    candidates: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        counts = {"candidates": self.candidates, "submitted": len(self.submitted),
                  "skipped_exact": 0, "skipped_near": 0}
        for skip in self.skipped:
            counts[f"skipped_{skip['reason']}"] += 1
        return counts

    def summary(self) -> str:
        c = self.counts
        return (f"{c['candidates']} candidates: {c['submitted']} submitted, {c['skipped_exact']} exact "
                f"and {c['skipped_near']} near duplicates skipped ({self.seconds:.2f} s)")


# -- reading -------------------------------------------------------------------------------------

def atoms_from_json(record: dict) -> Atoms:
    cell = record.get("cell")
    pbc = record.get("pbc", cell is not None)
    kwargs = {"positions": np.asarray(record["positions"], dtype=float),
              "cell": np.asarray(cell, dtype=float) if cell is not None else None, "pbc": pbc}
    if "numbers" in record:
        return Atoms(numbers=record["numbers"], **kwargs)
    return Atoms(symbols=record["symbols"], **kwargs)


def atoms_to_json(atoms: Atoms) -> dict:
    return _arrays_to_json(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)


def _arrays_to_json(numbers, positions, cell, pbc) -> dict:
    return {"numbers": numbers.tolist(), "positions": positions.tolist(), "cell": cell.tolist(),
            "pbc": [bool(p) for p in pbc]}


_log = logging.getLogger(__name__)


def read_candidates(paths: list[str | Path], problems: list[str] | None = None) -> list[Candidate]:
    """`.jsonl` queues (numbers or symbols, positions, cell, pbc, optional id) or ASE-readable files.

    A `.jsonl` line that is not a readable record (broken JSON, a line torn by a kill mid-write, a
    missing or malformed field) is skipped and reported as `FILE:LINE: problem`, appended to
    `problems` when given and logged as a warning; the good lines of the file still go through.
    """
    candidates: list[Candidate] = []
    for path in map(Path, paths):
        if path.suffix == ".jsonl":
            for line_no, record, atoms in _structure_records(path, problems):
                ident = str(record.get("id", f"{path.name}:{line_no}"))
                candidates.append(Candidate(ident, atoms, f"{path}:{line_no}"))
        else:
            for index, atoms in enumerate(ase.io.read(str(path), index=":")):
                candidates.append(Candidate(f"{path.name}:{index}", atoms, f"{path}:{index}"))
    return candidates


def read_submitted(path: Path, problems: list[str] | None = None) -> list[dict]:
    """The records of a submit queue; unreadable lines (and records without an id) are skipped and
    reported as in read_candidates."""
    if not path.exists():
        return []
    records = []
    for line_no, record, _ in _structure_records(path, problems):
        if "id" in record:
            records.append(record)
        else:
            _report_bad_line(path, line_no, "a submitted record without an id", problems)
    return records


def _structure_records(path: Path, problems: list[str] | None):
    """(line, record, Atoms) of every `.jsonl` line that holds a structure; the others are reported."""
    for line_no, record in _jsonl_records(path, problems):
        try:
            atoms = atoms_from_json(record)
        except (KeyError, ValueError, TypeError) as exc:
            _report_bad_line(path, line_no, f"not a structure record ({type(exc).__name__}: {exc})", problems)
            continue
        yield line_no, record, atoms


def _jsonl_records(path: Path, problems: list[str] | None):
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            _report_bad_line(path, line_no, f"not JSON ({exc.msg}, column {exc.colno}; a truncated "
                             "line is what a kill mid-write leaves)", problems)
            continue
        if not isinstance(record, dict):
            _report_bad_line(path, line_no, f"not a JSON object ({type(record).__name__})", problems)
            continue
        yield line_no, record


def _report_bad_line(path: Path, line_no: int, problem: str, problems: list[str] | None) -> None:
    message = f"{path}:{line_no}: {problem}; line skipped"
    _log.warning(message)
    if problems is not None:
        problems.append(message)


# -- processing ----------------------------------------------------------------------------------

@dataclass
class _Entry:
    """A featurized structure. Plain arrays, not Atoms: entries come back from worker processes,
    and unpickling 100k Atoms objects in the parent cost more than a tenth of the run."""

    label: str            # how a skip refers to it
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    fingerprint: str
    desc: np.ndarray
    key: str
    threshold: float      # Å: the most a near duplicate's descriptor can differ (prefilter bound)

    def atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    def to_json(self) -> dict:
        return _arrays_to_json(self.numbers, self.positions, self.cell, self.pbc)


def _entry(label: str, atoms: Atoms, tolerance: float, near_tolerance: float, fp: str | None = None,
           canonical: bool = False) -> _Entry:
    desc = descriptor(atoms)
    return _Entry(label, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc,
                  fp or fingerprint(atoms, tolerance, assume_canonical=canonical), desc,
                  composition_key(atoms),
                  prefilter_threshold(atoms, near_tolerance, assume_reduced=canonical))


def process_outbox(candidates: list[Candidate], store=None, submitted_queue_path: str | Path | None = None,
                   out_dir: str | Path = ".", tolerance: float = DEFAULT_NEAR_TOLERANCE,
                   fingerprint_tolerance: float = DEFAULT_TOLERANCE, source: str = "outbox",
                   generation: int = 0, processes: int = 1) -> OutboxReport:
    """Deduplicate `candidates`, append survivors to the submit queue and the store (pending).

    `store` is a StructureStore or None (no store); `submitted_queue_path` defaults to
    `out_dir/dft_submit.jsonl`, which is also where the queue is written. `processes` > 1
    canonicalizes and describes candidates in that many worker processes (results are identical).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One outbox at a time per directory: reading the queue, deduplicating and appending is one step.
    with open(out_dir / ".dft_submit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _process_locked(candidates, store, submitted_queue_path, out_dir, tolerance,
                               fingerprint_tolerance, source, generation, processes)


def _process_locked(candidates, store, submitted_queue_path, out_dir: Path, tolerance, fingerprint_tolerance,
                    source, generation, processes) -> OutboxReport:
    start = time.perf_counter()
    submit_path = out_dir / SUBMIT_FILE
    queue_path = Path(submitted_queue_path) if submitted_queue_path else submit_path
    previous = read_submitted(queue_path)
    if queue_path != submit_path:
        previous = read_submitted(submit_path) + previous

    references: list[_Entry] = []
    for record in previous:
        references.append(_entry(f"submitted:{record['id']}", atoms_from_json(record), fingerprint_tolerance,
                                 tolerance, record.get("fingerprint") if record.get("fingerprint_tolerance")
                                 == fingerprint_tolerance else None))
    if store is not None:
        # the store keeps each row's fingerprint at the default tolerance; another one is computed here
        stored = fingerprint_tolerance == DEFAULT_TOLERANCE
        for row in store.select_fingerprinted() if stored else store.select():
            references.append(_entry(f"store:{row.id}", row.frame.atoms, fingerprint_tolerance, tolerance,
                                     row.canonical_fingerprint if stored else None))

    report = OutboxReport(candidates=len(candidates))
    exact: dict[str, str] = {}
    for ref in references:
        exact.setdefault(ref.fingerprint, ref.label)

    entries = _featurize(candidates, fingerprint_tolerance, tolerance, processes)
    kept: list[tuple[Candidate, _Entry]] = []
    for cand, entry in zip(candidates, entries):
        if entry.fingerprint in exact:
            report.skipped.append(_skip(cand, "exact", exact[entry.fingerprint], entry.fingerprint))
            continue
        exact[entry.fingerprint] = cand.id
        kept.append((cand, entry))

    # Near duplicates: references first, then candidates in input order; the earlier one survives.
    # The descriptor proposes pairs; only a confirmed match (every atom within tolerance) skips.
    pool = references + [entry for _, entry in kept]
    n_ref = len(references)
    partners: dict[int, list[int]] = {}
    proposed = near_pairs([e.desc for e in pool], [e.key for e in pool], [e.threshold for e in pool])
    for i, j in _confirmed(pool, proposed, tolerance, processes):
        partners.setdefault(j, []).append(i)
    dropped: set[int] = set()
    survivors: list[tuple[Candidate, _Entry]] = []
    for offset, (cand, entry) in enumerate(kept):
        index = n_ref + offset
        match = next((i for i in sorted(partners.get(index, [])) if i < n_ref or i not in dropped), None)
        if match is not None:
            dropped.add(index)
            report.skipped.append(_skip(cand, "near", pool[match].label, entry.fingerprint))
        else:
            survivors.append((cand, entry))

    if store is not None and survivors:
        from mlip_autopipec.data.frames import LabelledFrame
        from mlip_autopipec.store.structure_store import NewStructure, Status
        outcomes = store.add([NewStructure(LabelledFrame(entry.atoms(), None, None), source, status=Status.PENDING,
                                           generation=generation, origin=cand.origin,
                                           canonical_fingerprint=entry.fingerprint if stored else None)
                              for cand, entry in survivors])
        final = []
        for (cand, entry), outcome in zip(survivors, outcomes):
            if not outcome.added:
                report.skipped.append(_skip(cand, "exact", f"store:{outcome.duplicate_of}", entry.fingerprint))
            else:
                final.append((cand, entry, outcome.id))
    else:
        final = [(cand, entry, None) for cand, entry in survivors]

    for cand, entry, store_id in final:
        record = {"id": cand.id, "fingerprint": entry.fingerprint, "fingerprint_tolerance": fingerprint_tolerance,
                  "store_id": store_id, "origin": cand.origin, "generation": generation,
                  **entry.to_json()}
        report.submitted.append(record)

    out_dir.mkdir(parents=True, exist_ok=True)
    if report.submitted or not submit_path.exists():
        existing = submit_path.read_text() if submit_path.exists() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        atomic_write_text(submit_path, existing + "".join(json.dumps(r) + "\n" for r in report.submitted))
    atomic_write_text(out_dir / SKIP_FILE, "".join(json.dumps(s) + "\n" for s in report.skipped))
    report.seconds = time.perf_counter() - start
    return report


def _featurize_one(args: tuple) -> _Entry:
    ident, numbers, positions, cell, pbc, tolerance, near_tolerance = args
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    return _entry(ident, canonicalize(atoms), tolerance, near_tolerance, canonical=True)


def _featurize(candidates: list[Candidate], tolerance: float, near_tolerance: float, processes: int) -> list[_Entry]:
    # plain arrays travel to worker processes far cheaper than Atoms objects
    jobs = [(c.id, c.atoms.numbers, c.atoms.positions, c.atoms.cell.array, c.atoms.pbc, tolerance, near_tolerance)
            for c in candidates]
    if processes <= 1 or len(jobs) < 200:
        return [_featurize_one(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(_featurize_one, jobs, chunksize=max(1, len(jobs) // (8 * processes))))


def _matches(args: tuple) -> bool:
    first, second, tolerance = args
    a, b = (Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
            for numbers, positions, cell, pbc in (first, second))
    return find_match(a, b, tolerance) is not None


def _confirmed(pool: list[_Entry], pairs: list[tuple[int, int]], tolerance: float,
               processes: int) -> list[tuple[int, int]]:
    """The proposed pairs that are near duplicates by the real criterion (every atom within tolerance)."""
    def arrays(entry: _Entry) -> tuple:
        return entry.numbers, entry.positions, entry.cell, entry.pbc
    jobs = [(arrays(pool[i]), arrays(pool[j]), tolerance) for i, j in pairs]
    if processes <= 1 or len(jobs) < 200:
        verdicts = [_matches(job) for job in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(processes) as workers:
            verdicts = list(workers.map(_matches, jobs, chunksize=max(1, len(jobs) // (8 * processes))))
    return [pair for pair, verdict in zip(pairs, verdicts) if verdict]


def _skip(cand: Candidate, reason: str, duplicate_of: str, fp: str) -> dict:
    return {"id": cand.id, "reason": reason, "duplicate_of": duplicate_of, "fingerprint": fp,
            "origin": cand.origin}
