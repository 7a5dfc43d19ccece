"""Shared fixtures: the real DFT data in ../shared/data and an isolated Prefect home."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MLIP_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

# Before anything imports Prefect: keep its database, results and logs out of the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="mlip-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "Cu-I.extxyz").is_file():
        pytest.fail(f"reference data not found in {SHARED_DATA}; set MLIP_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "structures.db"
