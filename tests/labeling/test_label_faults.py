"""Fault injection: calculators that raise, abort, hang or return NaN must cost one row, not the batch."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import label_pending
from mlip_autopipec.store import Status
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell


def faulty(name: str, element: str | None = "Ni") -> CalculatorSpec:
    return CalculatorSpec(factory=f"tests.labeling.faulty_calculators:{name}", kwargs={"element": element})


def live_workers(marker: str) -> list[int]:
    """Pids of labelling workers (zombies excluded) whose command line mentions `marker`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "mlip_autopipec.labeling.worker" in command and marker in command and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("calculator, expected", [
    ("Crashing", ["Crashing worker failed with exit code 1", "RuntimeError: SCF exploded on purpose"]),
    ("Aborting", ["Aborting worker was killed by SIGABRT (exit code -6)", "about to abort"]),
    ("NaNForces", ["NaNForces returned unusable labels: forces: not finite on atom(s) [0, 1, 2"]),
])
def test_a_failing_structure_is_retried_then_stays_failed_and_good_ones_complete(
        pending, tmp_path, calculator, expected):
    store, [good, bad] = pending(fcc_cell("Cu"), fcc_cell("Ni"))
    report = label_pending(store, faulty(calculator), max_attempts=3, workers=2, timeout_s=60,
                           workdir=tmp_path)

    assert report.completed == [good] and store.get(good).status is Status.COMPLETED
    failed = store.get(bad)
    assert failed.status is Status.FAILED and failed.provenance["attempts"] == 3
    assert failed.provenance["error"].startswith(f"structure {bad} (attempt 3): ")
    assert all(text in failed.provenance["error"] for text in expected), failed.provenance["error"]
    assert list(report.failed) == [bad] and report.retried == 2 and len(report.errors) == 3
    assert (tmp_path / f"structure-{bad}" / "worker.log").is_file()  # kept for the post-mortem

    again = label_pending(store, faulty(calculator), max_attempts=3, timeout_s=60, workdir=tmp_path)
    assert again.attempts == [] and store.get(bad).status is Status.FAILED  # out of attempts


def test_a_hanging_calculator_is_killed_at_the_timeout(pending, tmp_path):
    store, [good, bad] = pending(fcc_cell("Cu"), fcc_cell("Ni"))
    start = time.monotonic()
    # 10 s: the good structure's worker must start and finish inside it on a busy 2-core machine
    report = label_pending(store, faulty("Hanging"), max_attempts=1, workers=2, timeout_s=10,
                           workdir=tmp_path)
    assert time.monotonic() - start < 30
    assert report.completed == [good]
    assert store.get(bad).status is Status.FAILED
    assert "Hanging timed out after 10 s; the worker was killed" in report.failed[bad]
    assert live_workers(str(tmp_path)) == []


def test_a_transient_failure_succeeds_on_retry(pending, tmp_path):
    store, [row] = pending(fcc_cell("CuNi"))
    report = label_pending(store, faulty("Flaky"), max_attempts=2, timeout_s=60, workdir=tmp_path)
    assert report.completed == [row] and report.retried == 1 and not report.failed
    assert "transient failure on purpose" in report.errors[0]
    assert store.get(row).provenance["attempts"] == 2 and "error" not in store.get(row).provenance


def test_concurrent_workers_lose_nothing(pending, tmp_path):
    good = [fcc_cell("Cu", seed=s) for s in range(6)]
    store, ids = pending(*good, fcc_cell("Ni", seed=1), fcc_cell("Ni", seed=2))
    report = label_pending(store, faulty("Crashing"), max_attempts=2, workers=2, timeout_s=60,
                           workdir=tmp_path)

    assert sorted(report.completed) == ids[:6] and sorted(report.failed) == ids[6:]
    assert store.status_counts() == {"pending": 0, "running": 0, "completed": 6, "failed": 2}
    assert sorted(a.structure_id for a in report.attempts) == sorted(ids + ids[6:])
    spans = sorted((a.started, a.started + a.seconds) for a in report.attempts)
    overlapping = [later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)]
    assert any(overlapping)  # two workers really computed at the same time


def test_a_killed_labeller_leaves_no_worker_behind_and_its_rows_are_recoverable(pending, tmp_path):
    store, [row] = pending(fcc_cell("Ni"))
    script = textwrap.dedent(f"""
        from mlip_autopipec.calculators import CalculatorSpec
        from mlip_autopipec.labeling import label_pending
        from mlip_autopipec.store import StructureStore
        label_pending(StructureStore({str(store.url)!r}, campaign="test"),
                      CalculatorSpec(factory="tests.labeling.faulty_calculators:Hanging"),
                      timeout_s=120, workdir={str(tmp_path)!r})
    """)
    labeller = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 30
        while not live_workers(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_workers(str(tmp_path)), "the worker never started"
        time.sleep(2)  # let it get into the calculation
    finally:
        labeller.send_signal(signal.SIGKILL)
        labeller.wait()

    deadline = time.monotonic() + 10
    while live_workers(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_workers(str(tmp_path)) == []
    assert store.get(row).status is Status.RUNNING  # what a crash leaves behind

    report = label_pending(store, CalculatorSpec(factory="emt"), timeout_s=60, workdir=tmp_path,
                           recover_running=True)
    assert report.recovered == [row] and report.completed == [row]
