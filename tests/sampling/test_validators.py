import json

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from mlip_autopipec.sampling import run_sampling
from mlip_autopipec.sampling.config import MinDistValidator, QualityValidator
from mlip_autopipec.sampling.structure import load_npz
from mlip_autopipec.sampling.validators import check_min_dist, check_quality
from tests.sampling.structures import cu_bulk, rules


def test_min_dist_names_the_closest_pair():
    dimer = Atoms("CuNi", positions=[[0, 0, 0], [0, 0, 1.0]], cell=[8, 8, 8], pbc=True)
    settings = MinDistValidator(name="min_dist", min_factor=0.7, hard_min=0.5)
    reason = check_min_dist(dimer, settings)
    assert reason.startswith("min_dist: atoms 0 and 1 at 1.000 Å")
    dimer.positions[1, 2] = 2.4  # 0.7 x (1.32 + 1.24) = 1.79 Å allowed
    assert check_min_dist(dimer, settings) is None
    assert check_min_dist(dimer, MinDistValidator(name="min_dist", min_factor=0.0, hard_min=2.5)) is not None


def test_quality_gate_bounds_force_and_score():
    gate = QualityValidator(name="quality", max_force=10.0, min_force=0.1, score_threshold=1.0)
    assert check_quality(12.0, 0.2, gate).startswith("quality: max force 12")
    assert "min_force" in check_quality(0.05, 0.2, gate)
    assert "score 0.5" in check_quality(0.5, 1.0, gate)  # 0.5 eV/Å for 1 Å moved
    assert check_quality(0.5, 0.2, gate) is None


def test_rejected_steps_are_recorded_and_resampled_from_the_same_state(tmp_path):
    """push_pull up to 1.2 Å on 2.55 Å Cu-Cu bonds: the pulls that bring atoms closer than allowed
    are rejected, and the next step starts again from the unchanged basin."""
    validator = {"name": "min_dist", "min_factor": 0.75, "hard_min": 0.5}
    sampling = rules(push_pull={"min_delta": 0.2, "max_delta": 1.2},
                     pipeline={"validators": [validator], "trigger": {"max_force": None}})
    summary = run_sampling(cu_bulk(), _emt(), sampling, tmp_path, steps=12, seed=3)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    rejected = [s for s in steps if not s["accepted"]]
    assert summary.attempts_total == 12 and summary.attempts_rejected == len(rejected)
    assert 0 < len(rejected) < len(steps)

    settings = MinDistValidator(**validator)
    for step in steps:
        acted = load_npz(tmp_path / step["structure"])
        verdict = check_min_dist(acted, settings)
        assert (verdict is None) == step["accepted"], step
        if not step["accepted"]:
            assert step["rejected_by"] == "min_dist" and "quench" not in step
            i, j = step["details"]["atoms"]
            assert acted.get_distance(i, j, mic=True) < 0.75 * 2 * 1.32 or step["details"]["sign"] > 0
    # a rejected step changes nothing: the step after it starts from the same structure
    for before, after in zip(steps, steps[1:]):
        if not before["accepted"]:
            start_of_before = _start(tmp_path, before)
            start_of_after = _start(tmp_path, after)
            assert np.allclose(start_of_before, start_of_after)


def _start(run_dir, step):
    """The structure a push_pull step acted on: its output with the two moved atoms put back."""
    acted = load_npz(run_dir / step["structure"])
    i, j = step["details"]["atoms"]
    positions = acted.positions.copy()
    vector, length = find_mic(positions[j] - positions[i], acted.cell, acted.pbc)
    unit = vector / length
    half = step["details"]["sign"] * step["magnitude"] / 2
    positions[i] += half * unit
    positions[j] -= half * unit
    return positions


def _emt():
    from ase.calculators.emt import EMT

    return EMT()
