"""Store passwords never reach a file, a log or Prefect's database (issue 14.9): a real PostgreSQL
server that wants a password (scram-sha-256), a URL given with it, and every byte written checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlip_autopipec.store import StructureStore
from mlip_autopipec.store.secrets import password_to_environment, redact
from tests.conftest import PROJECT_ROOT
from tests.postgres import postgres_bin_dir, start_server, stop_server

PASSWORD = "Pa55-w0rd%21x"  # %21 is '!' URL-encoded


def test_redact_and_password_to_environment(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "")  # recorded, so the password set below is undone after the test
    monkeypatch.delenv("PGPASSWORD")
    url = f"postgresql://mlip:{PASSWORD}@db.example:5432/structures"
    assert redact(f"store {url} failed") == "store postgresql://mlip:***@db.example:5432/structures failed"
    assert password_to_environment(url) == "postgresql://mlip@db.example:5432/structures"
    assert os.environ["PGPASSWORD"] == "Pa55-w0rd!x"
    assert password_to_environment("postgresql://mlip@host/db") == "postgresql://mlip@host/db"
    assert password_to_environment("runs/structures.db") == "runs/structures.db"
    # a raw "@" in the password (unescaped) stays with the password, not with the host
    assert password_to_environment("postgresql://mlip:p@ss@db.example/s") == "postgresql://mlip@db.example/s"
    assert os.environ["PGPASSWORD"] == "p@ss"
    assert redact("postgresql://mlip:p@ss@db.example/s") == "postgresql://mlip:***@db.example/s"
    assert redact("postgresql+asyncpg://u:p@h/d and /plain/path") == "postgresql+asyncpg://u:***@h/d and /plain/path"


@pytest.fixture(scope="module")
def password_server():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mlip-postgres-pw-"))
    server = start_server(root, bin_dir, password="Pa55-w0rd!x")
    try:
        yield server
    finally:
        stop_server(server, bin_dir)
        shutil.rmtree(root, ignore_errors=True)


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and secret in path.read_bytes()]


def test_a_url_with_its_password_works_and_the_password_is_written_nowhere(password_server, tmp_path,
                                                                              shared_data, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "")  # recorded, so the password set below is undone after the test
    monkeypatch.delenv("PGPASSWORD")
    base = f"postgresql://{password_server.user}@{password_server.host}:{password_server.port}"
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password"):  # the server really wants one
        psycopg2.connect(f"{base}/postgres").close()
    with_password = f"postgresql://{password_server.user}:{PASSWORD}@{password_server.host}:{password_server.port}"
    connection = psycopg2.connect(f"{with_password}/postgres")
    connection.autocommit = True
    connection.cursor().execute("CREATE DATABASE secrets_test")
    connection.close()

    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API", "PGPASSWORD"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # an ephemeral server: its database is a file here
    env["PREFECT_LOGGING_LEVEL"] = "DEBUG"
    out = tmp_path / "dataset"
    url = f"{with_password}/secrets_test"
    for command in (["flows.ingest", "--store", url, str(shared_data / "Cu-I.extxyz")],
                    ["flows.export", "--store", url, "--out", str(out), "--formats", "extxyz"]):
        result = subprocess.run([sys.executable, "-m", *command], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        for secret in (PASSWORD, "Pa55-w0rd!x"):
            assert secret not in result.stdout + result.stderr
    store = StructureStore(url)  # the password moves to PGPASSWORD; the store's URL has none
    assert store.url == f"{base}/secrets_test" and store.status_counts()["completed"] == 105
    assert (out / "manifest.json").is_file()
    assert f"{base}/secrets_test" in (out / "manifest.json").read_text()
    for secret in (PASSWORD, "Pa55-w0rd!x"):  # manifest, Prefect's SQLite database and logs
        assert _files_holding(tmp_path, secret.encode()) == []
    assert (tmp_path / "prefect-home").is_dir() and any((tmp_path / "prefect-home").rglob("*.db"))
