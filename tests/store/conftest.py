"""Every store test runs twice: on a SQLite file and on a fresh database of a real PostgreSQL server."""

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Where a test's StructureStore lives: a SQLite path or a postgresql:// URL."""
    if request.param == "sqlite":
        return str(tmp_path / "structures.db")
    return request.getfixturevalue("postgres_url")()
