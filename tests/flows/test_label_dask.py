"""Labelling fanned out over a real local Dask cluster: two worker processes, one Prefect task per structure."""

import pytest
from distributed import Client, LocalCluster

from flows import label as label_flow
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.conftest import PROJECT_ROOT
from tests.labeling.conftest import fcc_cell


@pytest.fixture
def dask_cluster():
    """Two single-threaded worker processes, as remote workers would be; no dashboard."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield cluster, client


def test_every_row_is_labelled_once_on_both_workers_and_a_crash_is_recorded(tmp_path, monkeypatch, capsys,
                                                                             dask_cluster):
    monkeypatch.chdir(PROJECT_ROOT)  # the workers import the faulty calculator from here
    cluster, client = dask_cluster
    store = StructureStore(tmp_path / "structures.db", campaign="dask")
    outcomes = store.add([NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING)
                          for atoms in [fcc_cell("Cu", seed=s) for s in range(3)] + [fcc_cell("Ni")]])
    *good, bad = (outcome.id for outcome in outcomes)

    code = label_flow.main(["--store", store.url, "--campaign", "dask", "--workers", "2",
                            "--dask-address", cluster.scheduler_address,
                            "--calculator", "tests.labeling.faulty_calculators:Crashing",
                            "--calculator-kwargs", '{"element": "Ni"}', "--max-attempts", "2", "--timeout", "60"])

    assert code == 0  # the crashing structure is reported, not fatal
    assert "Crashing: 3 completed, 1 failed, 1 retried" in capsys.readouterr().out
    assert store.status_counts() == {"pending": 0, "running": 0, "completed": 3, "failed": 1}
    assert all(store.get(row).provenance["attempts"] == 1 for row in good)  # claimed and labelled once
    failed = store.get(bad)
    assert failed.provenance["attempts"] == 2
    assert failed.provenance["error"].startswith(
        f"structure {bad} (attempt 2): Crashing worker failed with exit code 1")
    executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) == len(good) + 2  # one task per attempt, all on the cluster
    assert all(count > 0 for count in executed.values()), executed  # both workers took structures
