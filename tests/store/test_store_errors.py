"""Store errors name the path (issue 14.8): a read-only store file or directory is a StoreError
(a ValueError) naming it, from the library and as one line from the command line."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
from ase.build import bulk

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StoreError, StructureStore, check_writable
from tests.conftest import PROJECT_ROOT


@contextlib.contextmanager
def read_only(path):
    """Read-only for this process: chmod for a user; for root, who ignores modes, the immutable flag."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: cannot make a path read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _pending(n=1):
    return [NewStructure(LabelledFrame(bulk("Cu", a=3.6 + 0.01 * i), None, None), source="t",
                         status=Status.PENDING) for i in range(n)]


def test_a_read_only_store_file_names_the_file(tmp_path):
    path = tmp_path / "s.db"
    StructureStore(path).add(_pending())
    with read_only(path):
        store = StructureStore(path)  # reading still works
        assert store.status_counts()["pending"] == 1
        with pytest.raises(StoreError, match=f"^{path}: cannot write the structure store: attempt to write a "
                                             "readonly database"):
            store.add(_pending(2))
        with pytest.raises(StoreError, match=f"^{path}: the structure store is read-only$"):
            check_writable(path)


def test_a_read_only_directory_names_the_path(tmp_path):
    directory = tmp_path / "campaign"
    directory.mkdir()
    with read_only(directory):
        with pytest.raises(StoreError, match=f"^{directory / 'new.db'}: cannot write the structure store"):
            StructureStore(directory / "new.db")
        with pytest.raises(StoreError, match=f"^{directory / 'sub'}: cannot create the directory of the structure store"):
            StructureStore(directory / "sub" / "new.db")
        with pytest.raises(StoreError, match=f"^{directory}: directory is read-only"):
            check_writable(directory / "sub" / "new.db")
    check_writable(directory / "sub" / "new.db")  # creates nothing
    assert list(directory.iterdir()) == []


def test_ingest_into_a_read_only_store_is_one_line_before_anything_starts(tmp_path, shared_data):
    path = tmp_path / "s.db"
    StructureStore(path).add(_pending())
    with read_only(path):
        result = subprocess.run([sys.executable, "-m", "flows.ingest", "--store", str(path),
                                 str(shared_data / "Cu-I.extxyz")], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: {path}: the structure store is read-only"]


def test_ingest_of_a_missing_file_is_one_line_and_creates_no_store(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flows.ingest", "--store", str(tmp_path / "s.db"),
                             str(tmp_path / "gone.extxyz")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'gone.extxyz'}: no such file"]
    assert not (tmp_path / "s.db").exists()
