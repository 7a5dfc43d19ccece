"""The held-out set from MD with the labeler (issue 14.2, 16.6): every run is a labelling job in
its own worker process (time limit, retries, failures reported, never fatal while one run
succeeds), and the MD's own labels are stored: nothing is labelled twice."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.campaign import steps
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.structures import md_labeler
from mlip_autopipec.store import Status, StructureStore
from tests.conftest import PROJECT_ROOT
from tests.test_processes import _processes_in

TWO_SEEDS = ("campaign: c\nworkdir: run\nseeds:\n  - {bulk: Cu, repeat: [2, 1, 1]}\n"
             "  - {bulk: Ni, repeat: [2, 1, 1]}\nbootstrap: {per_seed: 1}\n")


def _config(tmp_path, labeler: str, validation: str = "", max_attempts: int = 2) -> CampaignConfig:
    path = tmp_path / "campaign.yaml"
    path.write_text(TWO_SEEDS + f"labeling: {{calculator: {labeler}, timeout_s: 60, workers: 2, "
                    f"max_attempts: {max_attempts}}}\n"
                    f"validation: {{md_temperatures_K: [600], md_steps: 20, snapshots_per_run: 4{validation}}}\n")
    return CampaignConfig.load(path)


@pytest.fixture(autouse=True)
def _from_project_root(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # workers import tests.labeling.faulty_calculators from here


def test_the_md_labels_are_stored_as_they_were_computed(tmp_path):
    config = _config(tmp_path, "{factory: emt}")
    messages: list[str] = []
    prepared = steps.prepare(config, progress=messages.append)
    assert prepared.held_out_added == 8 and prepared.held_out_problems == []
    finished = [m for m in messages if "labelled snapshots" in m]
    assert sorted(m.split(": ", 1)[1] for m in finished) == ["seed 0 at 600 K: 4 labelled snapshots",
                                                             "seed 1 at 600 K: 4 labelled snapshots"]
    assert sorted(m.split(":")[0] for m in finished) == ["held-out MD 1/2", "held-out MD 2/2"]
    steps_seen = [m for m in messages if ": step " in m]  # progress while the runs go
    assert sorted(steps_seen) == sorted(f"held-out MD seed {s} at 600 K: step {n}/20" for s in (0, 1)
                                        for n in (5, 10, 15, 20))
    held_out = StructureStore(config.store_url, campaign=config.held_out_campaign)
    assert held_out.status_counts() == {"pending": 0, "running": 0, "completed": 8, "failed": 0}
    for row in held_out.select(Status.COMPLETED):
        reference = row.frame.atoms.copy()
        reference.calc = EMT()
        assert row.provenance["labeler_digest"] == config.labeling.calculator.digest()
        # the labels of the MD step itself; the trajectory's positions are written to 1e-8 Å
        assert row.frame.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(row.frame.forces, reference.get_forces(), atol=1e-6)
    assert (config.workdir / "held-out-md" / "held-out-0-0" / "worker.log").read_text().count("step ") == 4


def test_a_crashing_labeler_costs_its_runs_not_the_campaign(tmp_path):
    config = _config(tmp_path, "{factory: 'tests.labeling.faulty_calculators:Crashing', kwargs: {element: Ni}}")
    prepared = steps.prepare(config)
    [problem] = prepared.held_out_problems
    assert problem.startswith("seed 1 at 600 K: Crashing MD in ") and "failed 2 time(s)" in problem
    assert "RuntimeError: SCF exploded on purpose" in problem
    assert prepared.held_out_added == 4  # the Cu run still counts


def test_a_transient_failure_is_retried(tmp_path):
    config = _config(tmp_path, "{factory: 'tests.labeling.faulty_calculators:Flaky'}")
    messages: list[str] = []
    prepared = steps.prepare(config, progress=messages.append)
    assert prepared.held_out_added == 8 and prepared.held_out_problems == []
    assert all("(after 2 attempts)" in message for message in messages if "labelled snapshots" in message)


def test_a_hang_is_killed_at_the_time_limit_and_nothing_is_left_running(tmp_path):
    config = _config(tmp_path, "{factory: 'tests.labeling.faulty_calculators:Hanging', kwargs: {element: Ni}}",
                     validation=", md_timeout_s: 10", max_attempts=1)
    started = time.monotonic()
    prepared = steps.prepare(config)
    assert time.monotonic() - started < 60  # the Cu run must still finish within its 10 s on a busy machine
    [problem] = prepared.held_out_problems
    assert "timed out after 10 s; the worker was killed" in problem
    assert _processes_in(config.workdir / "held-out-md" / "held-out-1-0") == []


def test_no_held_out_set_at_all_is_a_clear_error(tmp_path):
    config = _config(tmp_path, "{factory: 'tests.labeling.faulty_calculators:Crashing'}", max_attempts=1)
    with pytest.raises(steps.HeldOutError, match="none of the 2 MD runs with the labeler gave labels; give "
                                                 "validation.data"):
        steps.prepare(config)


def test_gpaw_runs_md_without_symmetry_unless_told():
    assert md_labeler(CalculatorSpec(factory="gpaw", kwargs={"xc": "PBE"})).kwargs == {"xc": "PBE", "symmetry": "off"}
    told = CalculatorSpec(factory="gpaw", kwargs={"symmetry": {"point_group": False}})
    assert md_labeler(told) == told
    assert md_labeler(CalculatorSpec(factory="emt")).kwargs == {}


def test_a_killed_campaign_takes_its_held_out_md_workers_along(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.test_processes import _alive, _wait_for

    path = tmp_path / "campaign.yaml"
    path.write_text(TWO_SEEDS + "labeling: {calculator: {factory: 'tests.labeling.faulty_calculators:Hanging'}, "
                    "timeout_s: 600, workers: 2}\nvalidation: {md_temperatures_K: [600], md_steps: 20}\n")
    campaign = subprocess.Popen(
        [sys.executable, "-c", "from mlip_autopipec.campaign import steps; "
         f"from mlip_autopipec.campaign.config import CampaignConfig; steps.prepare(CampaignConfig.load({str(path)!r}))"],
        cwd=PROJECT_ROOT, start_new_session=True)
    jobs = [(tmp_path / "run" / "held-out-md" / f"held-out-{i}-0").resolve() for i in (0, 1)]
    try:
        assert _wait_for(lambda: all(_processes_in(job) for job in jobs), 60), "the MD workers never started"
        workers = [pid for job in jobs for pid in _processes_in(job)]
    finally:
        os.killpg(campaign.pid, signal.SIGKILL)
        campaign.wait()
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 5), "an MD worker outlived the campaign"
