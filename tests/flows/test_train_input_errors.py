"""flows.train: input errors before anything starts (issue 14.3), one line, exit 2, nothing created."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_a_missing_data_file_is_one_line_and_no_server_starts(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    result = subprocess.run([sys.executable, "-m", "flows.train", "--data", str(tmp_path / "gone.extxyz"),
                             "--out", str(tmp_path / "out")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'gone.extxyz'}: no such data file (--data)"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "prefect-home" / "prefect.db").exists()
