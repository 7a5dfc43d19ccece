"""A throw-away PostgreSQL server for the test session (pytest plugin).

Register it with ``pytest_plugins = ["tests.postgres"]`` in a conftest.py. The session fixture
``postgres_server`` runs Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``; scripts/bootstrap.sh
installs them) on a free loopback port with its data in a temporary directory, and stops it at the
end. ``postgres_url()`` gives a fresh, empty database for each call, as a ``postgresql://`` URL.

initdb and postgres refuse to run as root: as root, they run as the ``postgres`` system user (which the
Debian package creates). Tests skip, saying why, only where the binaries are absent.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
# Throw-away data: durability off makes every commit cheap. Enough connections for 8 labelling
# processes and a Prefect server's pool at once.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
}


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    data_dir: Path
    log: Path
    _databases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its name."""
        import psycopg2

        name = f"{prefix}_{os.getpid()}_{next(self._databases)}"
        connection = psycopg2.connect(self.url())
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> tuple[list[str], str]:
    """The command line, run as the `postgres` user when we are root; and the cluster's superuser."""
    if os.geteuid() != 0:
        return command, pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and there is no 'postgres' user to run the PostgreSQL server as "
                    "(the Debian package creates it: apt-get install postgresql)")
    return ["runuser", "-u", "postgres", "--", *command], "postgres"


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {' '.join(command)}\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")


def start_server(root: Path, bin_dir: Path, password: str | None = None) -> PostgresServer:
    """initdb in `root`/data, then pg_ctl start on a free loopback port; waits until it accepts.
    With `password`, TCP connections must give it (scram-sha-256); without, anyone is trusted."""
    data_dir, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    auth = ["--auth", "trust"]
    if password is not None:
        password_file = root / "password"
        password_file.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, user="postgres")
        auth = ["--auth-local", "trust", "--auth-host", "scram-sha-256", "--pwfile", str(password_file)]
    initdb, user = _as_server_user([str(bin_dir / "initdb"), "--pgdata", str(data_dir), *auth,
                                    "--encoding", "UTF8", "--no-sync"])
    _run(initdb, "initdb")
    last_error = None
    for _ in range(3):  # another process may take the free port between the probe and the start
        port = _free_port()
        options = " ".join(f"-c {key}={value}" for key, value in
                           {**SERVER_SETTINGS, "port": port, "unix_socket_directories": root}.items())
        start, _ = _as_server_user([str(bin_dir / "pg_ctl"), "start", "--pgdata", str(data_dir), "--log",
                                    str(log), "--options", options, "--wait",
                                    f"--timeout={START_TIMEOUT_S}"])
        try:
            _run(start, "pg_ctl start")
        except RuntimeError as exc:
            last_error = f"{exc}\n{log.read_text(errors='replace')[-2000:] if log.exists() else ''}"
            continue
        return PostgresServer("127.0.0.1", port, user, data_dir, log)
    raise RuntimeError(f"PostgreSQL did not start in {root}: {last_error}")


def stop_server(server: PostgresServer, bin_dir: Path) -> None:
    stop, _ = _as_server_user([str(bin_dir / "pg_ctl"), "stop", "--pgdata", str(server.data_dir),
                               "--mode", "immediate", "--wait"])
    subprocess.run(stop, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                    "/usr/lib/postgresql/*/bin: apt-get install postgresql (scripts/bootstrap.sh does as root)")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="mlip-postgres-"))
    started = time.monotonic()
    server = start_server(root, bin_dir)
    print(f"\nPostgreSQL on 127.0.0.1:{server.port} ({root}), up in {time.monotonic() - started:.1f} s")
    try:
        yield server
    finally:
        stop_server(server, bin_dir)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> Callable[..., str]:
    """postgres_url(driver="postgresql") -> URL of a new, empty database on the session's server."""

    def new_database(driver: str = "postgresql") -> str:
        return postgres_server.url(postgres_server.create_database(), driver=driver)

    return new_database
