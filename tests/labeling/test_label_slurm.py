"""Labelling as SLURM batch jobs on a real single-node SLURM cluster (tests/slurm.py, root only):
labels equal to the local path, recognisable job names, MPI-parallel GPAW, and scheduler faults
(scancel, walltime, a held job, a drained node) that fail and retry only the structures they hit."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.config.execution import SlurmSettings
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.labeling.slurm import label_pending_slurm
from mlip_autopipec.store import Status
from tests.labeling.conftest import fcc_cell

ROOT_MPI = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def settings(**overrides) -> SlurmSettings:
    values = {"walltime": "00:10:00", "poll_s": 0.3, "pending_timeout_s": 60, "max_jobs": 4}
    return SlurmSettings(**{**values, **overrides})


def test_batches_run_as_named_slurm_jobs_with_the_local_labels(slurm_cluster, pending, tmp_path):
    structures = [fcc_cell("CuNi", seed=seed) for seed in range(4)]
    store, ids = pending(*structures)
    report = label_pending_slurm(store, CalculatorSpec(factory="emt"), settings(structures_per_job=2, max_jobs=2),
                                 workdir=tmp_path / "job files")  # a space in the path, as users have
    assert sorted(report.completed) == ids and not report.failed, report.errors
    names = {job["name"] for job in report.jobs}
    assert names == {f"mlip-label-test-{ids[0]}-{ids[1]}", f"mlip-label-test-{ids[2]}-{ids[3]}"}
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
    assert not list((tmp_path / "job files").iterdir())  # completed batches leave nothing behind


def _job_of(cluster, row_id: int, states: tuple[str, ...]) -> dict | None:
    """The first job labelling structure `row_id` alone that is in one of `states` (retries come later)."""
    jobs = [job for job in cluster.jobs() if job.get("JobName") == f"mlip-label-test-{row_id}"
            and job["JobState"] in states]
    return min(jobs, key=lambda job: int(job["JobId"]), default=None)


def _in_background(target) -> threading.Thread:
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as exc:  # surfaces in the test through thread.errors
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def _wait(condition, timeout_s: float = 90.0, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_scancel_walltime_and_a_held_job_fail_and_retry_only_their_structures(slurm_cluster, pending, tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    store, ids = pending(*(fcc_cell("Cu", seed=seed) for seed in range(4)))
    cancelled, timed_out, held, untouched = ids
    for row_id in (cancelled, timed_out):  # their first jobs compute until the fault hits them
        (flags / f"structure-{row_id}").touch()
    # sbatch through a wrapper that holds the first job of `held` (scontrol hold, as an admin would).
    wrapper = tmp_path / "sbatch-holding"
    wrapper.write_text(f"""#!/bin/bash
if [[ "${{@: -1}}" == *"/mlip-label-test-{held}-"* && ! -e {tmp_path}/held-once ]]; then
  touch {tmp_path}/held-once; exec sbatch --hold "$@"
fi
exec sbatch "$@"
""")
    wrapper.chmod(0o755)

    def inject_faults():
        job = _wait(lambda: _job_of(slurm_cluster, cancelled, ("RUNNING",)), what="the job to scancel")
        slurm_cluster.scancel(job["JobId"])
        job = _wait(lambda: _job_of(slurm_cluster, timed_out, ("RUNNING",)), what="the job to time out")
        # Its walltime ends now: slurmctld's next time-limit check (every 30 s) kills it as TIMEOUT.
        slurm_cluster.scontrol("update", f"JobId={job['JobId']}", f"EndTime={time.strftime('%Y-%m-%dT%H:%M:%S')}")
        _wait(lambda: _job_of(slurm_cluster, timed_out, ("TIMEOUT",)), what="the walltime to hit")
        for flag in flags.iterdir():  # retries compute at once
            flag.unlink()

    faults = _in_background(inject_faults)
    spec = CalculatorSpec(factory="tests.labeling.faulty_calculators:HangingWhileFlagged",
                          kwargs={"flag_dir": str(flags)})
    report = label_pending_slurm(store, spec, settings(structures_per_job=1, pending_timeout_s=4,
                                                       commands={"sbatch": str(wrapper)}),
                                 workdir=tmp_path / "jobs", max_attempts=3)
    faults.join(timeout=5)
    assert not faults.errors, faults.errors

    assert sorted(report.completed) == ids and not report.failed, report.errors  # each stored once
    attempts = {row_id: store.get(row_id).provenance["attempts"] for row_id in ids}
    assert attempts == {cancelled: 2, timed_out: 2, held: 2, untouched: 1}
    assert report.retried == 3 and len(report.errors) == 3
    first_errors = {int(error.split()[1]): error for error in report.errors}
    assert "ended CANCELLED before labelling it" in first_errors[cancelled]
    assert "ended TIMEOUT (TimeLimit) before labelling it" in first_errors[timed_out]
    assert "did not start within 4 s (pending, reason: JobHeldUser)" in first_errors[held]
    states = sorted(job["state"] for job in report.jobs)
    assert states == ["CANCELLED", "CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", "TIMEOUT"]
    assert all(row.status is Status.COMPLETED for row in store.select())


def test_a_node_drained_mid_run_finishes_its_job_and_the_next_one_is_retried(slurm_cluster, pending, tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    store, [running, queued] = pending(fcc_cell("Cu", seed=1), fcc_cell("Ni", seed=2))
    (flags / f"structure-{running}").touch()

    def drain_then_resume():
        _wait(lambda: _job_of(slurm_cluster, running, ("RUNNING",)), what="the first job")
        slurm_cluster.set_node_state("DRAIN", reason="maintenance")
        (flags / f"structure-{running}").unlink()  # it finishes on the draining node
        _wait(lambda: _job_of(slurm_cluster, queued, ("CANCELLED",)), what="the queued job to be given up")
        slurm_cluster.set_node_state("RESUME")

    injector = _in_background(drain_then_resume)
    spec = CalculatorSpec(factory="tests.labeling.faulty_calculators:HangingWhileFlagged",
                          kwargs={"flag_dir": str(flags)})
    try:
        report = label_pending_slurm(store, spec, settings(structures_per_job=1, max_jobs=1, pending_timeout_s=3),
                                     workdir=tmp_path / "jobs", max_attempts=5)
    finally:
        injector.join(timeout=5)
        slurm_cluster.set_node_state("RESUME", check=False)  # whatever happened, the next test gets the node
    assert not injector.errors, injector.errors
    assert sorted(report.completed) == [running, queued] and not report.failed, report.errors
    # The retry submitted right after the cancel may itself wait out the 3 s if SLURM schedules it only
    # after the resume settles (seen on a loaded CI machine): how many retries it takes is SLURM's timing.
    retries = store.get(queued).provenance["attempts"] - 1
    assert store.get(running).provenance["attempts"] == 1 and 1 <= retries < 5
    assert len(report.errors) == retries
    for attempt, error in enumerate(report.errors, start=1):
        assert error.startswith(f"structure {queued} (attempt {attempt}): SLURM job "), error
        assert "did not start within 3 s (pending, reason: " in error, error


def test_gpaw_under_mpi_in_a_slurm_job_gives_the_serial_labels(slurm_cluster, pending, tmp_path):
    pytest.importorskip("gpaw")

    # Two k-points, so the two ranks split them; tiny on purpose (seconds, not physics).
    gpaw = CalculatorSpec(factory="gpaw", kwargs={"mode": {"name": "pw", "ecut": 200}, "xc": "LDA",
                                                  "kpts": {"size": [1, 1, 2], "gamma": True}, "txt": "gpaw.txt"})
    atoms = fcc_cell("Cu", seed=3)[:2]
    atoms.cell = [2.6, 2.6, 3.6]
    store, [parallel] = pending(atoms)
    report = label_pending_slurm(store, gpaw, settings(ntasks=2, mpi_command="mpiexec -n 2 --oversubscribe",
                                                       environment=ROOT_MPI),
                                 workdir=tmp_path / "slurm", keep_files=True, timeout_s=300)
    assert report.completed == [parallel], "\n".join(report.errors)
    [job] = report.jobs
    log = (tmp_path / "slurm" / job["directory"] / f"structure-{parallel}" / "gpaw.txt").read_text()
    assert re.search(r"^cores: +2$", log, re.MULTILINE), log[:2000]  # GPAW ran on 2 ranks

    serial = atoms.copy()  # the serial reference, in this process
    serial.calc = CalculatorSpec(factory="gpaw", kwargs={**gpaw.kwargs, "txt": None}).build()
    direct = LabelledFrame(serial, serial.get_potential_energy(), serial.get_forces(), serial.get_stress())
    mpi = store.get(parallel).frame
    assert mpi.energy == pytest.approx(direct.energy, abs=1e-6)
    np.testing.assert_allclose(mpi.forces, direct.forces, atol=1e-5)
    np.testing.assert_allclose(mpi.stress, direct.stress, atol=1e-6)
    print(f"\nGPAW, 2 MPI ranks in SLURM vs serial: |dE| = {abs(mpi.energy - direct.energy):.1e} eV, "
          f"max |dF| = {np.abs(mpi.forces - direct.forces).max():.1e} eV/Å")


def test_a_campaign_generation_labelled_on_slurm_with_gpaw_under_mpi(slurm_cluster, tmp_path, prefect_server):
    """End to end through the campaign's own labelling step (flows.active_learning.label_structures)
    with `labeling: {executor: slurm, ...}` from a campaign file: one generation's rows, GPAW on 2 MPI
    ranks per structure, both in one SLURM job; the next generation's row stays pending."""
    pytest.importorskip("gpaw")
    import yaml
    from prefect import flow

    from flows.active_learning import label_structures
    from mlip_autopipec.campaign.config import CampaignConfig
    from mlip_autopipec.store import NewStructure, StructureStore

    gpaw = {"mode": {"name": "pw", "ecut": 200}, "xc": "LDA", "kpts": {"size": [1, 1, 2], "gamma": True},
            "txt": "gpaw.txt"}
    slurm = {"ntasks": 2, "mpi_command": "mpiexec -n 2 --oversubscribe", "structures_per_job": 2, "poll_s": 0.5,
             "walltime": "00:10:00", "environment": ROOT_MPI, "job_name": "dft"}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": "cu", "workdir": "run", "seeds": [{"bulk": "Cu", "repeat": [1, 1, 2]}],
        "labeling": {"calculator": {"factory": "gpaw", "kwargs": gpaw}, "timeout_s": 300, "executor": "slurm",
                     "slurm": slurm}}))
    config = CampaignConfig.load(path)
    cells = []
    for seed in range(2):
        atoms = fcc_cell("Cu", seed=seed)[:2]
        atoms.cell = [2.6, 2.6, 3.6]
        cells.append(atoms)
    store = StructureStore(config.store_url, campaign=config.campaign)
    generation_1 = [outcome.id for outcome in store.add(
        [NewStructure(LabelledFrame(atoms, None, None), "md", status=Status.PENDING, generation=1) for atoms in cells])]
    [later] = [outcome.id for outcome in store.add(
        [NewStructure(LabelledFrame(fcc_cell("Ni", seed=9), None, None), "md", status=Status.PENDING, generation=2)])]

    counts = flow(name="label step")(label_structures)(config, config.campaign, 1)  # inside a flow run, as there
    assert counts.completed == 2 and counts.failed == 0
    for row_id in generation_1:
        row = store.get(row_id)
        assert row.status is Status.COMPLETED and row.provenance["labeler"] == "GPAW"
    assert store.get(later).status is Status.PENDING
    [job] = [job for job in slurm_cluster.jobs() if job["JobName"] == f"dft-cu-{generation_1[0]}-{generation_1[-1]}"]
    assert job["JobState"] == "COMPLETED" and job["NumTasks"] == "2"


def test_the_label_flow_submits_to_slurm_from_the_command_line(slurm_cluster, pending, tmp_path, prefect_server,
                                                               capsys):
    import json

    from flows import label as label_flow

    store, [row_id] = pending(fcc_cell("Cu", seed=7))
    slurm = {"poll_s": 0.5, "walltime": "00:05:00", "job_name": "cli"}
    assert label_flow.main(["--store", str(store.url), "--campaign", "test", "--workdir", str(tmp_path / "jobs"),
                            "--slurm", json.dumps(slurm)]) == 0
    assert "EMT: 1 completed, 0 failed, 0 retried" in capsys.readouterr().out
    assert store.get(row_id).status is Status.COMPLETED
    assert [job["JobState"] for job in slurm_cluster.jobs() if job["JobName"] == f"cli-test-{row_id}"] == ["COMPLETED"]


def test_an_interrupted_labelling_cancels_its_jobs_and_keeps_what_they_finished(slurm_cluster, pending, tmp_path,
                                                                               monkeypatch):
    from mlip_autopipec.labeling import slurm as slurm_labelling

    flags = tmp_path / "flags"
    flags.mkdir()
    store, [quick, hanging] = pending(fcc_cell("Cu", seed=4), fcc_cell("Ni", seed=5))
    (flags / f"structure-{hanging}").touch()
    poll = slurm_labelling._SlurmLabeling._poll

    def poll_until_the_first_is_done(self):  # then Ctrl-C, as a user would
        poll(self)
        if list((tmp_path / "jobs").glob(f"*/structure-{quick}/outcome.json")):
            raise KeyboardInterrupt

    monkeypatch.setattr(slurm_labelling._SlurmLabeling, "_poll", poll_until_the_first_is_done)
    spec = CalculatorSpec(factory="tests.labeling.faulty_calculators:HangingWhileFlagged",
                          kwargs={"flag_dir": str(flags)})
    with pytest.raises(KeyboardInterrupt):
        label_pending_slurm(store, spec, settings(structures_per_job=2), workdir=tmp_path / "jobs")
    assert store.get(quick).status is Status.COMPLETED  # finished before the interrupt: kept
    row = store.get(hanging)
    assert row.status is Status.PENDING and row.provenance["attempts"] == 1  # failed once, to be tried again
    assert "the labelling was interrupted; the job was cancelled" in row.provenance["error"]
    assert not [job for job in slurm_cluster.jobs() if job["JobState"] in ("RUNNING", "PENDING", "COMPLETING")]
