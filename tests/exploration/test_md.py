import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.exploration.md import WalkerSettings, run_walker


def test_walker_records_frames_and_model_energies(tmp_path):
    seed = bulk("Cu", cubic=True) * (2, 2, 2)
    result = run_walker(seed, EMT(), WalkerSettings(temperature_K=500, steps=40, record_every=10, seed=3),
                        tmp_path / "walker.extxyz")
    frames = ase.io.read(result.trajectory, ":")
    assert (result.frames, result.steps_done, result.stopped_early) == (4, 40, False)
    assert [f.info["md_step"] for f in frames] == [10, 20, 30, 40]
    moved = np.linalg.norm(frames[-1].positions - seed.positions, axis=1)
    assert moved.max() > 0.01  # the atoms really moved
    assert result.uncertainty == []  # EMT knows no extrapolation grade


@pytest.mark.slow
def test_walker_stops_once_the_potential_extrapolates(generation_1, tmp_path):
    calculator = PacemakerTrainer().make_calculator(generation_1.artifact)
    squeezed = bulk("Cu", "fcc", a=3.61 * 0.85, cubic=True) * (2, 2, 2)  # far outside the training data
    settings = WalkerSettings(temperature_K=300, steps=200, record_every=5, uncertainty_upper=1.5, seed=0)
    result = run_walker(squeezed, calculator, settings, tmp_path / "walker.extxyz")
    assert result.stopped_early and result.steps_done < 200
    frames = ase.io.read(result.trajectory, ":")
    assert frames[-1].info["max_gamma"] > 1.5
    assert frames[-1].arrays["gamma"].shape == (len(squeezed),)
    assert result.uncertainty[-1] == pytest.approx(frames[-1].info["max_gamma"])
