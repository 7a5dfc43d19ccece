"""One real Prefect server for the deployment tests that need it, set up and deployed once: starting,
setting up and deploying costs about a minute on 2 cores, and test_campaign_dispatch.py and
test_service.py each paid it."""

import pytest

from tests.deployments.test_service import start_service


@pytest.fixture(scope="package")
def service(tmp_path_factory):
    yield from start_service(tmp_path_factory)
