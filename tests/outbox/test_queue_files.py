"""Queue files with broken lines (issue 14.6): each bad line is named FILE:LINE and skipped, the
good lines go through, the outbox processes them."""

from __future__ import annotations

import json
import logging

from ase.build import bulk

from mlip_autopipec.outbox import SUBMIT_FILE, process_outbox, read_candidates, read_submitted
from mlip_autopipec.outbox.outbox import atoms_to_json


def _record(index: int, element: str = "Cu") -> str:
    atoms = bulk(element, "fcc", a=3.6, cubic=True)
    atoms.rattle(0.2, seed=index)  # distinct structures, not near duplicates
    return json.dumps({"id": f"c{index}", **atoms_to_json(atoms)})


def test_a_broken_and_a_truncated_line_are_named_and_the_good_lines_go_through(tmp_path, caplog):
    queue = tmp_path / "dft_queue.jsonl"
    good = [_record(i) for i in range(4)]
    missing_field = json.dumps({"id": "no-positions", "numbers": [29]})
    queue.write_text("\n".join([good[0], "{not json", good[1], missing_field, good[2], "[1, 2]", good[3],
                                good[3][: len(good[3]) // 2]]))  # the last line torn by a kill
    problems: list[str] = []
    with caplog.at_level(logging.WARNING):
        candidates = read_candidates([queue], problems)
    assert [c.id for c in candidates] == ["c0", "c1", "c2", "c3"]
    assert [p.split(": ")[0] for p in problems] == [f"{queue}:2", f"{queue}:4", f"{queue}:6", f"{queue}:8"]
    assert "not JSON" in problems[0] and "KeyError" in problems[1] and "not a JSON object" in problems[2]
    assert f"{queue}:8" in caplog.text

    report = process_outbox(candidates, None, None, tmp_path / "out")
    assert len(report.submitted) == 4
    with open(tmp_path / "out" / SUBMIT_FILE, "a") as handle:
        handle.write('{"id": "torn')
    submitted_problems: list[str] = []
    assert len(read_submitted(tmp_path / "out" / SUBMIT_FILE, submitted_problems)) == 4
    assert submitted_problems == [f"{tmp_path / 'out' / SUBMIT_FILE}:5: not JSON (Unterminated string starting at, "
                                  "column 8; a truncated line is what a kill mid-write leaves); line skipped"]

    # valid JSON that is no structure, in the queue the outbox reads back: skipped, not a KeyError
    with open(tmp_path / "out" / SUBMIT_FILE, "a") as handle:
        handle.write('\n{"id": "x", "numbers": [29]}\n')
    again = process_outbox([candidates[0]], None, None, tmp_path / "out")
    assert again.counts["skipped_exact"] == 1 and not again.submitted


def test_the_outbox_command_names_a_missing_queue_file_before_anything_starts(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-m", "flows.outbox", "--queue", str(tmp_path / "gone.jsonl"),
                             "--out", str(tmp_path / "out")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'gone.jsonl'}: no such queue file"]
    assert not (tmp_path / "out").exists()
