"""Eight labelling processes share one PostgreSQL store: nothing lost, nothing duplicated, nothing twice.

Each process offers its own share of structures plus its neighbour's (every structure is added by two
processes at once, as two outboxes would), then labels pending rows with EMT until none are left.
"""

import json
import multiprocessing

import numpy as np
from ase.calculators.emt import EMT

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.labeling import label_pending
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.labeling.conftest import fcc_cell

PROCESSES = 8
PER_PROCESS = 1
CAMPAIGN = "pg-concurrent"


def _structures(share: int):
    return [fcc_cell("CuNi" if share % 2 else "Cu", seed=100 * share + k) for k in range(PER_PROCESS)]


def _add_and_label(url: str, share: int, workdir: str, outcome_file: str) -> None:
    store = StructureStore(url, campaign=CAMPAIGN)
    offered = _structures(share) + _structures((share + 1) % PROCESSES)
    added = store.add([NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING)
                       for atoms in offered])
    report = label_pending(store, CalculatorSpec(factory="emt"), timeout_s=120, workdir=workdir)
    with open(outcome_file, "w") as out:
        json.dump({"added": [o.id for o in added if o.added], "completed": report.completed,
                   "errors": report.errors}, out)


def test_eight_labelling_processes_on_one_postgresql_store(postgres_url, tmp_path):
    url = postgres_url()
    context = multiprocessing.get_context("spawn")
    outcome_files = [tmp_path / f"process-{share}.json" for share in range(PROCESSES)]
    processes = [context.Process(target=_add_and_label,
                                 args=(url, share, str(tmp_path / f"jobs-{share}"), str(outcome_files[share])))
                 for share in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    outcomes = [json.loads(path.read_text()) for path in outcome_files]
    assert not [error for outcome in outcomes for error in outcome["errors"]]

    store = StructureStore(url, campaign=CAMPAIGN)
    rows = list(store.select())
    added = [row_id for outcome in outcomes for row_id in outcome["added"]]
    completed = [row_id for outcome in outcomes for row_id in outcome["completed"]]
    # Every structure stored once, though offered twice; every row labelled by exactly one process, once.
    assert len(rows) == PROCESSES * PER_PROCESS == len(added) == len(set(added))
    assert sorted(completed) == sorted(added) == sorted(row.id for row in rows)
    assert len({row.fingerprint for row in rows}) == len(rows)
    assert store.status_counts() == {"pending": 0, "running": 0, "completed": len(rows), "failed": 0}
    for row in rows:
        assert row.provenance["attempts"] == 1
        reference = row.frame.atoms.copy()
        reference.calc = EMT()
        assert abs(row.frame.energy - reference.get_potential_energy()) < 1e-10
        np.testing.assert_allclose(row.frame.forces, reference.get_forces(), rtol=0, atol=1e-10)
