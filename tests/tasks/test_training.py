"""The training slot: one slot of the server's `gpu` limit per training, strict in deployments."""

import logging
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from mlip_autopipec.backends import TrainingConfigError, TrainingError, TrainingTimeout
from tasks.training import TRAINING_SLOT, training_slot


def _active_slots() -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(TRAINING_SLOT).active_slots


def _delete_limit() -> None:
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(TRAINING_SLOT)


def test_outside_a_deployment_training_runs_without_the_limit():
    with pytest.raises(ObjectNotFound):  # the session's server was never set up
        _active_slots()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("prefect").addHandler(handler)
    try:
        with training_slot():  # no `gpu` limit: neither a failure (strict) nor a wait
            pass
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]


def test_a_deployment_run_on_a_server_without_the_limit_fails_clearly(monkeypatch):
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", str(uuid.uuid4()))
    with pytest.raises(RuntimeError, match="needs the server's 'gpu' concurrency limit: run "
                                           "`python -m deployments.setup_server`"):
        with training_slot():
            pytest.fail("trained without the limit")


@pytest.mark.parametrize("in_deployment", [True, False])
def test_an_existing_limit_holds_one_slot_while_it_trains(monkeypatch, in_deployment):
    if in_deployment:
        monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", str(uuid.uuid4()))
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=TRAINING_SLOT, limit=1))
    try:
        with training_slot():
            assert _active_slots() == 1
        assert _active_slots() == 0
    finally:
        _delete_limit()


@pytest.mark.parametrize("error, retried", [
    (TrainingError("pacemaker was killed by signal 9", retryable=True), True),
    (TrainingError("pacemaker exited with status 1"), False),  # its own IndexError: the same again
    (TrainingTimeout("time limit"), False),
    (TrainingConfigError("number_of_functions_per_element: 0 functions"), False),
])
def test_only_a_training_killed_by_a_signal_is_retried(error, retried):
    """The train task's retry rule, on the real Prefect state of a task that raised `error`."""
    from prefect import flow, task

    from tasks.training import _retry_crashes_only

    @task
    def fails():
        raise error

    @flow
    def run() -> bool:
        return _retry_crashes_only(None, None, fails(return_state=True))

    assert run() is retried
