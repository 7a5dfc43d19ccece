"""Labelling as SLURM batch jobs on a real single-node SLURM cluster (tests/slurm.py, root only):
labels equal to the local path, recognisable job names, MPI-parallel GPAW, and scheduler faults
(scancel, walltime, a held job, a drained node) that fail and retry only the structures they hit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.config.execution import SlurmSettings
from mlip_autopipec.labeling.slurm import label_pending_slurm
from mlip_autopipec.store import Status
from tests.labeling.conftest import fcc_cell

ROOT_MPI = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def settings(**overrides) -> SlurmSettings:
    values = {"walltime": "00:10:00", "poll_s": 0.3, "pending_timeout_s": 60, "max_jobs": 4}
    return SlurmSettings(**{**values, **overrides})


def test_batches_run_as_named_slurm_jobs_with_the_local_labels(slurm_cluster, pending, tmp_path):
    structures = [fcc_cell("CuNi", seed=seed) for seed in range(5)]
    store, ids = pending(*structures)
    report = label_pending_slurm(store, CalculatorSpec(factory="emt"), settings(structures_per_job=2, max_jobs=2),
                                 workdir=tmp_path / "jobs")
    assert sorted(report.completed) == ids and not report.failed, report.errors
    names = {job["name"] for job in report.jobs}
    assert names == {f"mlip-label-test-{ids[0]}-{ids[1]}", f"mlip-label-test-{ids[2]}-{ids[3]}",
                     f"mlip-label-test-{ids[4]}"}
    known = {job["JobId"]: job for job in slurm_cluster.jobs()}  # what `scontrol show job` / squeue show
    for job in report.jobs:
        assert known[job["job_id"]]["JobName"] == job["name"] and known[job["job_id"]]["JobState"] == "COMPLETED"
    for row_id, atoms in zip(ids, structures):
        row = store.get(row_id)
        assert row.status is Status.COMPLETED and row.provenance["attempts"] == 1
        reference = atoms.copy()
        reference.calc = EMT()
        assert row.frame.energy == pytest.approx(reference.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(row.frame.forces, reference.get_forces(), atol=1e-10)
    assert not list((tmp_path / "jobs").iterdir())  # completed batches leave nothing behind
