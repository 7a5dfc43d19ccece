"""The claim / label-one / record pieces that task runners fan out, driven by a plain thread pool."""

import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import CancelFile, LabelingError, LabelingRun, fan_out, label_claimed, label_structure
from mlip_autopipec.store import Status, StructureStore
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell

EMT_SPEC = CalculatorSpec(factory="emt")


def test_a_unit_that_never_reports_back_fails_its_row_and_it_is_tried_again(pending, tmp_path):
    """A Prefect task that crashed or a Dask worker that died must not leave its row `running`."""
    store, [first, second, third] = pending(fcc_cell("Cu"), fcc_cell("Ni"), fcc_cell("CuNi"))
    run = LabelingRun(store, EMT_SPEC, max_attempts=2)
    lost_once: set[int] = set()
    claimed_at_submit: list[int] = []

    def submit(row_id: int) -> Future:
        claimed_at_submit.append(store.status_counts()["running"])
        if row_id == second and not lost_once:
            lost_once.add(row_id)
            future = Future()
            future.set_exception(RuntimeError("worker tcp://10.0.0.7:4242 died"))
            return future
        return pool.submit(label_claimed, StructureStore(store.url, campaign="test"), row_id, EMT_SPEC,
                           tmp_path, timeout_s=60)

    with ThreadPoolExecutor(max_workers=2) as pool:
        report = fan_out(run, submit, workers=2, on_interrupt=lambda: None)

    assert sorted(report.completed) == [first, second, third] and report.retried == 1 and not report.failed
    assert report.errors == [f"structure {second} (attempt 1): the labelling task did not finish: "
                             "RuntimeError: worker tcp://10.0.0.7:4242 died"]
    assert store.get(second).provenance["attempts"] == 2 and store.get(second).status is Status.COMPLETED
    assert max(claimed_at_submit) <= 2  # rows are claimed as workers free up, never all at once


def test_setting_a_cancel_file_kills_the_worker(tmp_path):
    cancel = CancelFile(tmp_path / "cancel")
    threading.Timer(1.0, cancel.set).start()
    hanging = CalculatorSpec(factory="tests.labeling.faulty_calculators:Hanging")
    start = time.monotonic()
    with pytest.raises(LabelingError, match="Hanging was cancelled; the worker was killed"):
        label_structure(fcc_cell("Cu"), hanging, tmp_path / "job", timeout_s=120, cancel=cancel)
    assert time.monotonic() - start < 30


def test_ctrl_c_cancels_the_workers_and_leaves_no_row_running(pending, tmp_path):
    # Ctrl-C goes to a process of its own: a SIGINT to the whole test session once crashed it inside
    # the interpreter (with OVITO's Qt, torch and TensorFlow loaded by earlier tests).
    store, [row] = pending(fcc_cell("Ni"))
    labelling = subprocess.Popen([sys.executable, "-m", "tests.labeling.ctrl_c_fan_out", store.url, str(tmp_path)],
                                 cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while store.get(row).status is not Status.RUNNING:  # fan_out has claimed it and waits
            if labelling.poll() is not None or time.monotonic() > deadline:
                labelling.kill()
                pytest.fail(f"the row was never claimed: {labelling.communicate()}")
            time.sleep(0.2)
        time.sleep(1.0)  # the worker process is hanging in the calculator
        labelling.send_signal(signal.SIGINT)
        out, err = labelling.communicate(timeout=60)
    finally:
        labelling.kill()

    assert labelling.returncode == 130, err
    assert store.get(row).status is Status.FAILED
    assert json.loads(out)[str(row)].startswith(
        f"structure {row} (attempt 1): Hanging was cancelled; the worker was killed")
