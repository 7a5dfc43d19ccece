"""ASE LMDB datasets (FairChem's AseDBDataset format, `ase_db_backends.aselmdb`): one file, or a
directory of shards (`*.aselmdb` / `*.lmdb`), read in a fixed order (shards sorted by name, rows
by id) so that indices into the dataset are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ase import Atoms

LMDB_SUFFIXES = (".aselmdb", ".lmdb")


def is_lmdb_path(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.suffix in LMDB_SUFFIXES or (path.is_dir() and bool(lmdb_shards(path)))


def lmdb_shards(path: str | os.PathLike) -> list[Path]:
    """The LMDB file itself, or the shards of a directory in name order."""
    path = Path(path)
    if path.is_dir():
        return sorted(child for child in path.iterdir() if child.suffix in LMDB_SUFFIXES and child.is_file())
    return [path]


def read_ase_lmdb(path: str | os.PathLike) -> Iterator[Atoms]:
    """Every structure of an ASE LMDB file or shard directory, labels as calculator results."""
    shards = lmdb_shards(path)
    if not shards:
        raise ValueError(f"{path}: a directory without *.aselmdb / *.lmdb shards")
    database_class = _database_class()
    for shard in shards:
        if not shard.is_file():
            raise FileNotFoundError(f"{shard}: no such LMDB file")
        database = database_class(str(shard), readonly=True)
        try:
            for row in sorted(database.select(), key=lambda row: row.id):
                atoms = row.toatoms()
                atoms.info.update(row.get("data", {}) or {})
                yield atoms
        finally:
            database.close()


def write_ase_lmdb(frames: Sequence[Atoms], path: str | os.PathLike) -> Path:
    """Write `frames` (with their calculator results) to a new ASE LMDB file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; LMDB datasets are written once")
    database = _database_class()(str(path), readonly=False)
    try:
        for atoms in frames:
            database.write(atoms)
    finally:
        database.close()
    return path


def _database_class():
    try:
        from ase_db_backends.aselmdb import LMDBDatabase
    except ImportError as exc:
        raise ImportError("reading ASE LMDB datasets needs ase-db-backends (pip install ase-db-backends)") from exc
    return LMDBDatabase
