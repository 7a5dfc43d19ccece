"""A fixed labeler gets another go (issue 14.4): rows a different labeler failed become pending
again with their attempts reset, and the report says so; retry_failed does it for every row."""

from __future__ import annotations

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.labeling import label_pending
from mlip_autopipec.store import Status
from tests.labeling.conftest import fcc_cell

TYPO = CalculatorSpec(factory="ase.calculators.emtt:EMT")  # a mistyped module
FIXED = CalculatorSpec(factory="emt")


def test_fixing_a_mistyped_labeler_makes_the_failed_rows_pending_again(pending, tmp_path):
    store, ids = pending(fcc_cell("Cu"), fcc_cell("Ni", seed=1))
    first = label_pending(store, TYPO, max_attempts=2, timeout_s=60, workdir=tmp_path)
    assert sorted(first.failed) == ids and "No module named 'ase.calculators.emtt'" in first.failed[ids[0]]
    assert all(store.get(i).provenance["attempts"] == 2 for i in ids)

    again = label_pending(store, TYPO, max_attempts=2, timeout_s=60, workdir=tmp_path)
    assert again.reset == [] and again.completed == [] and again.attempts == []  # same labeler: used up

    fixed = label_pending(store, FIXED, max_attempts=2, timeout_s=60, workdir=tmp_path)
    assert fixed.reset == ids and sorted(fixed.completed) == ids
    assert f"2 failed structures were made pending again (the labeler changed since they failed, now EMT " \
           f"digest {FIXED.digest()})" in fixed.summary()
    for row_id in ids:
        row = store.get(row_id)
        assert row.status is Status.COMPLETED and row.provenance["attempts"] == 1  # attempts were reset


def test_retry_failed_retries_rows_the_same_labeler_failed(pending, tmp_path):
    crashing = CalculatorSpec(factory="tests.labeling.faulty_calculators:Crashing")
    store, [row] = pending(fcc_cell("Cu"))
    label_pending(store, crashing, max_attempts=1, timeout_s=60, workdir=tmp_path)
    assert store.get(row).status is Status.FAILED
    assert label_pending(store, crashing, max_attempts=1, timeout_s=60, workdir=tmp_path).attempts == []

    retried = label_pending(store, crashing, max_attempts=1, timeout_s=60, workdir=tmp_path, retry_failed=True)
    assert retried.reset == [row] and retried.reset_reason == "retry failed was asked for"
    assert len(retried.attempts) == 1 and store.get(row).status is Status.FAILED
    assert store.get(row).provenance["failed_labeler_digest"] == crashing.digest()
