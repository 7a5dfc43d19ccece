"""The structure store: every structure of a campaign, its labels and its provenance, in ase.db.

A SQLite file in the campaign directory by default; a ``postgresql://`` URL goes through the
same code (ase.db's PostgreSQL backend). Each row holds the structure, its labels as ASE
calculator results (energy, forces, stress) and key-value provenance:

    status        pending -> running -> completed | failed   (failed -> pending on retry)
    campaign      campaign name
    generation    active-learning generation that produced the structure
    source        ingest, md, perturb, ...
    parent        id of the row this structure derives from (MD start, perturbation seed)
    fingerprint   the frame's duplicate key (store/fingerprint.py, as given): a structure is never
                  stored twice; also the split group of an export
    canonical_fingerprint   the full fingerprint (equivalent cells, rotations, periodic translations
                  ignored) the outbox compares with: written with the row when the writer has it,
                  otherwise computed and recorded on first use (`select_fingerprinted`)
    labeler, labeler_digest, error, attempts, status_time (Unix seconds),
    failed_labeler_digest (which labeler failed a failed row: a different one retries it)

Every change runs in one exclusive transaction, so concurrent labelling processes lose nothing
and never insert the same fingerprint twice.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import ase.db
from ase.db.core import now as ase_db_now
from ase.db.row import AtomsRow, atoms2dict
import numpy as np
from ase import Atoms

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store.fingerprint import fingerprint
from mlip_autopipec.store.secrets import password_to_environment

DEFAULT_CAMPAIGN = "default"
# What SQLite says when the file or its directory is read-only (a journal cannot be created).
_NOT_WRITABLE = ("readonly database", "unable to open database file", "disk I/O error")
# Every change to a PostgreSQL store holds this transaction-level advisory lock (one per database).
_PG_LOCK = "SELECT pg_advisory_xact_lock(7340263)"


class Status(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


_ALLOWED_TRANSITIONS = {
    Status.PENDING: {Status.RUNNING},
    Status.RUNNING: {Status.COMPLETED, Status.FAILED, Status.PENDING},
    Status.FAILED: {Status.PENDING},
    Status.COMPLETED: set(),
}


class StoreError(ValueError):
    """A store that cannot be opened or written (a path that is not a SQLite database, a read-only
    file or directory); the message names the path."""


class StatusError(RuntimeError):
    """A status change the lifecycle does not allow (e.g. relabelling a completed row)."""


@dataclass
class NewStructure:
    """A structure to add: labelled (status completed) or waiting for a label (pending)."""

    frame: LabelledFrame
    source: str
    status: Status = Status.COMPLETED
    generation: int = 0
    parent: int | None = None
    origin: str | None = None  # where it came from, e.g. "file.extxyz:12"
    labeler: str | None = None
    labeler_digest: str | None = None
    canonical_fingerprint: str | None = None  # fingerprint(frame.atoms), when the writer has it


@dataclass
class AddOutcome:
    id: int
    fingerprint: str
    duplicate_of: int | None = None  # set when the structure was already stored; nothing added
    stored: StoredStructure | None = None  # the row added, as `get` returns it (`add(keep_rows=True)`)

    @property
    def added(self) -> bool:
        return self.duplicate_of is None


@dataclass
class StoredStructure:
    id: int
    frame: LabelledFrame
    status: Status
    fingerprint: str
    source: str
    generation: int
    parent: int | None
    provenance: dict = field(default_factory=dict)
    canonical_fingerprint: str | None = None

    @property
    def split_group(self) -> int:
        """Frames that derive from one parent belong together when data are split."""
        return self.parent if self.parent is not None else self.id


class StructureStore:
    """Campaign-scoped access to an ase.db structure database (SQLite path or PostgreSQL URL)."""

    def __init__(self, url: str | Path, campaign: str = DEFAULT_CAMPAIGN):
        # A password in a postgresql:// URL goes to PGPASSWORD; self.url never holds one (store/secrets.py).
        self.url = password_to_environment(str(url))
        self.campaign = campaign
        if not self.is_server:
            try:
                Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{exc.filename or Path(self.url).parent}: cannot create the directory of the "
                                 f"structure store {self.url}: {exc.strerror or exc}") from None
        self._db = ase.db.connect(self.url, type="postgresql" if self.is_server else "db",
                                  append=True, use_lock_file=False)
        # The tables of a new database are created under the lock, before any read (which would
        # create them unlocked): processes opening a new store at once would otherwise race. An
        # existing SQLite store is opened without the lock, so readers never queue behind a writer.
        if self.is_server or not _sqlite_tables_ready(self.url):
            with self._transaction():
                pass

    @property
    def is_server(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    # -- writing -----------------------------------------------------------------------------

    def add(self, structures: Iterable[NewStructure], keep_rows: bool = False) -> list[AddOutcome]:
        """Add structures in one transaction; a fingerprint already stored is reported, not added.

        With `keep_rows`, each added outcome carries the row as `get` would read it back, built
        from the row written (`_stored` of the same AtomsRow), so a caller that exports what it
        just added need not read it back."""
        structures = list(structures)
        fingerprints = [fingerprint(s.frame.atoms, as_given=True) for s in structures]
        outcomes: list[AddOutcome] = []
        with self._transaction() as db:
            known = self._fingerprint_index(db)
            now = time.time()
            for structure, print_ in zip(structures, fingerprints):
                if print_ in known:
                    outcomes.append(AddOutcome(known[print_], print_, duplicate_of=known[print_]))
                    continue
                row = _row(structure.frame, self._new_row_keys(structure, print_, now))
                row_id = db.write(row)
                known[print_] = row_id
                outcome = AddOutcome(row_id, print_)
                if keep_rows:
                    row.id = row_id
                    outcome.stored = _stored(row)
                outcomes.append(outcome)
        return outcomes

    def claim(self, limit: int, generation: int | None = None) -> list[StoredStructure]:
        """Move up to `limit` pending rows to running and return them (one labelling worker's share)."""
        selection = self._selection(status=Status.PENDING, generation=generation)
        with self._transaction() as db:
            rows = list(db.select(selection, limit=limit, sort="id"))
            for row in rows:
                self._update_status(db, row, Status.RUNNING, attempts=row.get("attempts", 0) + 1)
            claimed = [row.id for row in rows]
        return [self.get(i) for i in claimed]

    def complete(self, row_id: int, labels: LabelledFrame, labeler: str, labeler_digest: str) -> None:
        """Store the labels of a running row and mark it completed, atomically."""
        with self._transaction() as db:
            row = db.get(id=row_id)
            _check_transition(row, Status.COMPLETED)
            atoms = row.toatoms()
            labelled = LabelledFrame(atoms, labels.energy, labels.forces, labels.stress,
                                     labels.energy_corrected).to_atoms()
            keys = {"status": Status.COMPLETED.value, "status_time": time.time(),
                    "labeler": labeler, "labeler_digest": labeler_digest}
            if labels.energy_corrected is not None:
                keys["energy_corrected"] = labels.energy_corrected
            db.update(row_id, atoms=labelled, delete_keys=["error"], **keys)

    def fail(self, row_id: int, error: str, labeler_digest: str | None = None) -> None:
        """Mark a running row failed with the reason; `labeler_digest` records which labeler failed,
        so that fixing the labeler makes the row pending again (`reset_failed`)."""
        keys = {"failed_labeler_digest": labeler_digest} if labeler_digest else {}
        with self._transaction() as db:
            row = db.get(id=row_id)
            self._update_status(db, row, Status.FAILED, error=error[-2000:] or "unknown error", **keys)

    def reset_failed(self, unless_digest: str | None = None) -> list[int]:
        """Failed rows back to pending with their attempts reset to 0: all of them, or with
        `unless_digest` only those a different labeler failed (a row failed before the labeler was
        recorded counts as another labeler's). Returns their ids."""
        reset = []
        with self._transaction() as db:
            for row in list(db.select(self._selection(status=Status.FAILED))):
                if unless_digest is not None and row.get("failed_labeler_digest") == unless_digest:
                    continue
                self._update_status(db, row, Status.PENDING, attempts=0)
                reset.append(row.id)
        return reset

    def requeue(self, max_attempts: int, include_running: bool = False) -> list[int]:
        """Send failed rows (and, after a crash, rows left running) back to pending.

        Rows that already used `max_attempts` stay failed.
        """
        statuses = [Status.FAILED] + ([Status.RUNNING] if include_running else [])
        requeued = []
        with self._transaction() as db:
            for status in statuses:
                for row in list(db.select(self._selection(status=status))):
                    if row.get("attempts", 0) < max_attempts:
                        self._update_status(db, row, Status.PENDING)
                        requeued.append(row.id)
        return requeued

    # -- reading -----------------------------------------------------------------------------

    def get(self, row_id: int) -> StoredStructure:
        with self._reading() as db:
            return _stored(db.get(id=row_id))

    def harvest(self, generation: int | None = None, source: str | None = None,
                max_generation: int | None = None) -> list[StoredStructure]:
        """Completed rows of this campaign, optionally of one generation or source, in id order."""
        selection = self._selection(status=Status.COMPLETED, generation=generation, source=source)
        if max_generation is not None:
            selection += f",generation<={int(max_generation)}"
        with self._reading() as db:
            return [_stored(row) for row in db.select(selection, sort="id")]

    def select(self, status: Status | None = None, generation: int | None = None) -> Iterator[StoredStructure]:
        # Read completely before yielding: the caller may change the store while it iterates.
        with self._reading() as db:
            rows = [_stored(row) for row in
                    db.select(self._selection(status=status, generation=generation), sort="id")]
        yield from rows

    def select_fingerprinted(self) -> list[StoredStructure]:
        """Every row of the campaign, each with its canonical fingerprint. A row without one (written
        by ingest, which does not pay for it, or before it was recorded) gets it computed here and
        recorded, all in one transaction after the computing, so later calls only read it."""
        rows = list(self.select())
        missing = {row.id: row for row in rows if row.canonical_fingerprint is None}
        for row in missing.values():
            row.canonical_fingerprint = fingerprint(row.frame.atoms)
        if missing:
            with self._transaction() as db:
                for row in missing.values():
                    _add_text_key(db, row.id, "canonical_fingerprint", row.canonical_fingerprint)
        return rows

    def status_counts(self) -> dict[str, int]:
        # A count query per status: reading every row's key-value pairs took 40 ms per 1000 rows.
        with self._reading() as db:
            return {status.value: db.count(self._selection(status=status)) for status in Status}

    def fingerprints(self) -> dict[str, int]:
        """Every stored fingerprint (all campaigns: a structure is never stored twice) -> row id."""
        with self._reading() as db:
            return self._fingerprint_index(db)

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[ase.db.core.Database]:
        """One exclusive transaction: commit on success, roll back on any error. A SQLite file or
        directory that cannot be written is a StoreError naming the path."""
        try:
            with self._write_transaction() as db:
                yield db
        except sqlite3.OperationalError as exc:
            if not any(reason in str(exc) for reason in _NOT_WRITABLE):
                raise  # "database is locked" and the like: the callers retry those
            raise StoreError(f"{self.url}: cannot write the structure store: {exc} (is the file, or the "
                             "directory it is in, read-only?)") from None

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[ase.db.core.Database]:
        with self._db as db:
            connection = db.connection
            if isinstance(connection, sqlite3.Connection):
                # ase.db creates the tables one autocommitted statement at a time, so another
                # process could find "systems" before its version row: create them in our lock.
                connection.execute("BEGIN IMMEDIATE")
                if not db.initialized:
                    db._initialize(connection)  # commits when it creates the tables
                    if not connection.in_transaction:
                        connection.execute("BEGIN IMMEDIATE")
            else:
                _allow_rollback(connection)
                cursor = connection.cursor()
                cursor.execute(_PG_LOCK)
                if not db.initialized:
                    # Creating the tables commits, which releases the lock: take it again.
                    db._initialize(connection)
                    cursor.execute(_PG_LOCK)
            yield db

    @contextlib.contextmanager
    def _reading(self) -> Iterator[ase.db.core.Database]:
        """One connection for a whole read: ase.db otherwise opens a connection for every row it
        returns (about 20 ms each on PostgreSQL; on SQLite a connect and a query per row, a fifth of
        an export). Plain SELECTs: a SQLite reader holds no lock between statements."""
        if self._db.connection is not None:
            yield self._db
            return
        with self._db as db:
            if self.is_server:
                _allow_rollback(db.connection)
            yield db

    def _fingerprint_index(self, db) -> dict[str, int]:
        with db.managed_connection() as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT value, id FROM text_key_values WHERE key = 'fingerprint'")
            return {value: row_id for value, row_id in cursor.fetchall()}

    def _selection(self, status: Status | None = None, generation: int | None = None,
                   source: str | None = None) -> str:
        parts = [f"campaign={self.campaign}"]
        if status is not None:
            parts.append(f"status={Status(status).value}")
        if generation is not None:
            parts.append(f"generation={int(generation)}")
        if source is not None:
            parts.append(f"source={source}")
        return ",".join(parts)

    def _new_row_keys(self, structure: NewStructure, print_: str, now: float) -> dict:
        keys = {
            "status": Status(structure.status).value,
            "campaign": self.campaign,
            "generation": int(structure.generation),
            "source": structure.source,
            "fingerprint": print_,
            "attempts": 0,
            "status_time": now,
        }
        optional = {
            "parent": structure.parent,
            "origin": structure.origin,
            "labeler": structure.labeler,
            "labeler_digest": structure.labeler_digest,
            "energy_corrected": structure.frame.energy_corrected,
            "canonical_fingerprint": structure.canonical_fingerprint,
        }
        keys.update({key: value for key, value in optional.items() if value is not None})
        return keys

    @staticmethod
    def _update_status(db, row, new_status: Status, **keys) -> None:
        _check_transition(row, new_status)
        db.update(row.id, status=new_status.value, status_time=time.time(), **keys)


class _StoredLabels:
    """A frame's labels as ase.db reads a calculator's results: the row is the one a
    SinglePointCalculator gives (calculator 'unknown', same properties), without its copy of the
    atoms and without ase's geometry check against that copy (4 allclose per row), which were a
    third of the cost of an ingest."""

    name = "unknown"

    def __init__(self, frame: LabelledFrame):
        self.results = {key: value if key == "energy" else np.array(value, float)
                        for key, value in (("energy", frame.energy), ("forces", frame.forces),
                                           ("stress", frame.stress)) if value is not None}

    def todict(self) -> dict:
        return {}

    def check_state(self, atoms, tol: float = 1e-15) -> list:
        return []

    def get_property(self, name: str, atoms=None, allow_calculation: bool = True):
        return self.results.get(name)


def _row(frame: LabelledFrame, keys: dict) -> AtomsRow:
    """The row ase.db writes for the frame (with a SinglePointCalculator) and `keys`, built here: ase's
    per-row check of the key names (they are ours, fixed in _new_row_keys) was a fifth of an ingest."""
    atoms = frame.atoms.copy()
    atoms.calc = _StoredLabels(frame)
    row = atoms2dict(atoms)
    row.update(key_value_pairs=keys, ctime=ase_db_now(), user=os.getenv("USER"))
    return AtomsRow(row)


def check_writable(url: str | Path) -> None:
    """Raise StoreError naming the path when a SQLite store could not be written: a read-only file,
    or a read-only directory (SQLite writes its journal beside the file). Creates nothing, so a
    command can check before it starts anything. PostgreSQL URLs are not checked here."""
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        return
    path = Path(url).absolute()
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"{path}: the structure store is read-only")
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"{directory}: directory is read-only, so the structure store {path} cannot be "
                         "written there (SQLite writes a journal beside it)")


def _sqlite_tables_ready(path: str) -> bool:
    """Whether ase.db finished creating the tables of this SQLite file (its version row is written last)."""
    if not Path(path).exists():
        return False
    with contextlib.closing(sqlite3.connect(path, timeout=20)) as connection:
        try:
            return connection.execute("SELECT value FROM information WHERE name = 'version'").fetchone() is not None
        except sqlite3.OperationalError:  # no information table yet
            return False
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
            raise StoreError(f"{path}: not a structure store (SQLite says: {exc})") from exc


def _add_text_key(db, row_id: int, key: str, value: str) -> None:
    """What `db.update(row_id, key=value)` writes (ase.db's SQLite and PostgreSQL schema) for a key
    the row lacks, without ase's deleting the row's key entries first: a scan of the key tables per
    row (they have no index on id), which made recording 3000 fingerprints take 17 s."""
    with db.managed_connection() as connection:
        cursor = connection.cursor()
        pairs = db._get_row(row_id).key_value_pairs  # read in the transaction: a status changed meanwhile stays
        if key in pairs:
            return
        cursor.execute("UPDATE systems SET mtime=?, key_value_pairs=? WHERE id=?",
                       (ase_db_now(), db.encode({**pairs, key: value}), row_id))
        cursor.execute("INSERT INTO keys VALUES (?, ?)", (key, row_id))
        cursor.execute("INSERT INTO text_key_values VALUES (?, ?, ?)", (key, value, row_id))


def _allow_rollback(connection) -> None:
    """ase-db-backends wraps the psycopg2 connection without rollback(), which ase.db calls when a
    transaction fails (an AttributeError would then hide the real error, e.g. a StatusError)."""
    if not hasattr(connection, "rollback"):
        connection.rollback = connection.con.rollback


def _check_transition(row, new_status: Status) -> None:
    current = Status(row.status)
    if new_status not in _ALLOWED_TRANSITIONS[current]:
        raise StatusError(f"row {row.id}: cannot go from {current.value} to {new_status.value}")


def _stored(row) -> StoredStructure:
    """The row as a StoredStructure: the same for a row read back from SQLite or PostgreSQL and for
    the row `add` just wrote (Python floats, C-ordered arrays, which is what a pickle of them shows;
    a 3x3 stress as 3x3: SQLite returns it flat). Built from the row's fields: `row.toatoms()` would
    also build the tags, masses, constraints and a calculator that a frame drops."""
    forces, stress = (None if row.get(key) is None else np.array(row.get(key), dtype=float, order="C")
                      for key in ("forces", "stress"))
    if stress is not None and stress.shape == (9,):
        stress = stress.reshape(3, 3)
    frame = LabelledFrame(
        atoms=Atoms(numbers=row.numbers, positions=row.positions, cell=row.cell, pbc=row.pbc),
        energy=_optional_float(row.get("energy")),
        forces=forces,
        stress=stress,
        energy_corrected=_optional_float(row.get("energy_corrected")),
    )
    provenance = {key: row.get(key) for key in
                  ("origin", "labeler", "labeler_digest", "failed_labeler_digest", "error", "attempts",
                   "status_time", "campaign")
                  if row.get(key) is not None}
    parent = row.get("parent")
    return StoredStructure(
        id=row.id, frame=frame, status=Status(row.status), fingerprint=row.fingerprint,
        source=row.source, generation=int(row.generation),
        parent=None if parent is None else int(parent), provenance=provenance,
        canonical_fingerprint=row.get("canonical_fingerprint"),
    )


def _optional_float(value) -> float | None:
    return None if value is None else float(value)
