"""The engine's run directory: resume continues ids without duplicating lines or files, also after
a crash or a kill mid-run; the DFT queue is what the outbox reads; γ triggers with a real ACE model."""

import json
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlip_autopipec.outbox import process_outbox, read_candidates
from mlip_autopipec.sampling import engine, run_sampling
from mlip_autopipec.sampling.models import sampling_calculator
from mlip_autopipec.sampling.structure import load_npz
from tests.conftest import PROJECT_ROOT
from tests.sampling.structures import adatom_on_cu111, rules

# Every step triggers (forces after an action are far above 0.05 eV/Å) and some find new basins.
RULES = dict(rigid_translate={"min_step": 1.0, "max_step": 1.8}, jitter={"sigma": 0.05},
             pipeline={"trigger": {"max_force": 0.05}})


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def comparable(run_dir):
    """Everything a run wrote except wall-clock times."""
    steps = [{k: v for k, v in s.items() if k != "seconds"} for s in lines(run_dir / "steps.jsonl")]
    return steps, lines(run_dir / "basins.jsonl"), lines(run_dir / "dft_queue.jsonl"), \
        sorted(p.name for p in (run_dir / "structures").iterdir())


def assert_consistent(run_dir):
    steps, basins, queue, files = comparable(run_dir)
    assert [s["id"] for s in steps] == list(range(len(steps)))
    assert files == sorted(["initial.npz"] + [f"{i:06d}.npz" for i in range(len(steps))])
    assert [q["step"] for q in queue] == [s["id"] for s in steps if s.get("triggered_by")]
    assert [q["id"] for q in queue] == [s["candidate"] for s in steps if s.get("triggered_by")]
    assert [b["step"] for b in basins] == [None] + [s["id"] for s in steps if s.get("new_basin")]
    assert len({q["id"] for q in queue}) == len(queue)


def run(run_dir, steps, resume=False, **kwargs):
    return run_sampling(adatom_on_cu111(), EMT(), rules(**RULES), run_dir, steps=steps, seed=7, resume=resume,
                        candidate_prefix="cu-", **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run."""
    run_dir = tmp_path_factory.mktemp("reference")
    summary = run(run_dir, 8)
    assert_consistent(run_dir)
    steps, basins, queue, _ = comparable(run_dir)
    assert summary.attempts_total == 8 and len(queue) >= 4 and len(basins) >= 2
    return run_dir, summary


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, reference):
    reference_dir, reference_summary = reference
    first = run(tmp_path, 3)
    assert first.steps_this_run == 3
    with pytest.raises(ValueError, match="already holds a sampling run: pass resume"):
        run(tmp_path, 8)
    second = run(tmp_path, 8, resume=True)
    assert second.steps_this_run == 5 and second.attempts_total == 8
    assert comparable(tmp_path) == comparable(reference_dir)
    assert second.candidates == reference_summary.candidates
    assert run(tmp_path, 8, resume=True).steps_this_run == 0  # finished: nothing more to do
    assert comparable(tmp_path) == comparable(reference_dir)


def test_crash_between_a_steps_files_leaves_nothing_behind(tmp_path, monkeypatch, reference):
    """Step 4 writes its npz, basin and queue lines, then dies before its steps.jsonl line."""
    original = engine.append_line

    def dies_at_step_4(path, record):
        if path.name == "steps.jsonl" and record["id"] == 4:
            raise KeyboardInterrupt("killed")
        original(path, record)

    monkeypatch.setattr(engine, "append_line", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, 8)
    monkeypatch.setattr(engine, "append_line", original)
    assert [q["step"] for q in lines(tmp_path / "dft_queue.jsonl")][-1] == 4  # the orphan exists
    assert (tmp_path / "structures" / "000004.npz").exists()
    with open(tmp_path / "steps.jsonl", "a") as handle:
        handle.write('{"id": 4, "action": "jit')  # and a torn line, as a kill mid-write leaves

    run(tmp_path, 8, resume=True)
    assert_consistent(tmp_path)
    assert comparable(tmp_path) == comparable(reference[0])


KILLED_RUN = """
import sys
from pathlib import Path
from ase.calculators.emt import EMT
from mlip_autopipec.sampling import run_sampling
from tests.sampling.structures import adatom_on_cu111, rules
from tests.sampling.test_engine import RULES
run_sampling(adatom_on_cu111(), EMT(), rules(**RULES), Path(sys.argv[1]), steps=10_000, seed=7,
             candidate_prefix="cu-")
"""


def test_kill_mid_run_then_resume(tmp_path, reference):
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)], cwd=PROJECT_ROOT,
                               env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    steps_file = tmp_path / "steps.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not steps_file.exists() or steps_file.read_text().count("\n") < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = steps_file.read_text().count("\n")
    assert 3 <= done < 10_000

    summary = run(tmp_path, max(done, 8), resume=True)
    assert_consistent(tmp_path)
    reference_steps = comparable(reference[0])[0]
    assert comparable(tmp_path)[0][:8] == reference_steps  # the same walk, whatever the kill interrupted
    assert summary.attempts_total == max(done, 8)


def test_target_basins_stops_the_walk(tmp_path):
    summary = run(tmp_path, 50, target_basins=1)
    assert summary.stopped_by == "target_basins" and summary.new_basins == 1
    assert lines(tmp_path / "steps.jsonl")[-1]["new_basin"] is True


def test_queue_is_what_the_outbox_reads(tmp_path, reference):
    reference_dir, summary = reference
    candidates = read_candidates([reference_dir / "dft_queue.jsonl"])
    assert [c.id for c in candidates] == [c["id"] for c in summary.candidates]
    for candidate, record in zip(candidates, lines(reference_dir / "dft_queue.jsonl")):
        stored = load_npz(reference_dir / "structures" / f"{record['step']:06d}.npz")
        assert np.allclose(candidate.atoms.positions, stored.positions)
        assert candidate.atoms.numbers.tolist() == stored.numbers.tolist()
    report = process_outbox(candidates, out_dir=tmp_path)
    assert report.candidates == len(candidates) and len(report.submitted) >= 1
    assert len(report.submitted) + len(report.skipped) == len(candidates)


@pytest.mark.slow
def test_gamma_trigger_with_a_pacemaker_potential(tmp_path, generation_1, cu_manifest):
    """The γ rule fires exactly for the steps whose action's structure has max γ above the threshold."""
    start = next(f for f in ase.io.read(cu_manifest.path_of("extxyz", "train"), ":") if len(f) == 2).repeat(2)
    calculator, _ = sampling_calculator(str(generation_1.directory))
    # no quench: the walk drifts away from the training data, so γ grows step by step
    blocks = dict(jitter={"sigma": 0.05}, push_pull={"min_delta": 0.05, "max_delta": 0.2}, quench={"method": "none"})

    def walk(run_dir, gamma):
        sampling = rules(**blocks, pipeline={"validators": [], "trigger": {"max_force": None, "gamma": gamma}})
        run_sampling(start, calculator, sampling, run_dir, steps=8, seed=2)
        return lines(run_dir / "steps.jsonl"), lines(run_dir / "dft_queue.jsonl")

    steps, queue = walk(tmp_path / "record", 1e9)
    gammas = [s["max_gamma_pre"] for s in steps]
    assert queue == []
    distinct = sorted(set(gammas))
    assert len(distinct) >= 2
    threshold = (distinct[len(distinct) // 2 - 1] + distinct[len(distinct) // 2]) / 2

    steps, queue = walk(tmp_path / "triggered", threshold)
    assert [s["max_gamma_pre"] for s in steps] == gammas  # the same walk
    expected = [s["id"] for s in steps if s["max_gamma_pre"] > threshold]
    assert 0 < len(expected) < len(steps)
    assert [q["step"] for q in queue] == expected
    assert all(q["triggered_by"] == ["gamma"] for q in queue)
    for candidate in read_candidates([tmp_path / "triggered" / "dft_queue.jsonl"]):
        fresh, _ = sampling_calculator(str(generation_1.directory))
        candidate.atoms.calc = fresh
        candidate.atoms.get_potential_energy()
        recorded = next(q["max_gamma"] for q in queue if q["id"] == candidate.id)
        assert float(np.max(fresh.results["gamma"])) == pytest.approx(recorded, rel=1e-6)
