import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from PIL import Image

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.validation.errors import predict
from mlip_autopipec.validation.plots import error_histogram, parity_plot


def _emt_frames(count=6, offset=0.0):
    frames = []
    for i in range(count):
        atoms = bulk("Cu", cubic=True) * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        frames.append(LabelledFrame(atoms.copy(), atoms.get_potential_energy() + offset * len(atoms),
                                    atoms.get_forces().copy()))
    return frames


def test_a_perfect_model_has_zero_error():
    metrics = predict(EMT(), _emt_frames()).summary()
    assert metrics["energy_rmse_mev_per_atom"] == pytest.approx(0, abs=1e-9)
    assert metrics["forces_rmse_mev_per_angstrom"] == pytest.approx(0, abs=1e-9)


def test_errors_are_in_mev_per_atom_and_worst_frames_are_ranked():
    frames = _emt_frames(offset=0.010)  # references 10 meV/atom above EMT
    frames[3].energy += 0.08  # frame 3: 10 meV/atom more on 8 atoms
    predictions = predict(EMT(), frames)
    errors = 1000 * predictions.energy_per_atom_error
    np.testing.assert_allclose(np.delete(errors, 3), -10.0, atol=1e-9)
    assert errors[3] == pytest.approx(-20.0)
    assert predictions.worst_frames(2)[0]["frame"] == 3


def test_plots_are_real_pictures(tmp_path):
    predictions = predict(EMT(), _emt_frames(offset=0.01))
    for draw, name in ((parity_plot, "parity.png"), (error_histogram, "errors.png")):
        path = draw(predictions, tmp_path / name, title="EMT vs EMT+10 meV")
        pixels = np.asarray(Image.open(path).convert("L"))
        assert pixels.shape[0] > 300 and pixels.std() > 10


def test_histogram_of_identical_errors(tmp_path):
    predictions = predict(EMT(), _emt_frames(offset=0.01))
    # Errors equal to the last bits: numpy's 40 bins over such a range raise "Too many bins".
    predictions.energy_predicted = predictions.energy_reference - 0.08 * (1 + np.array([0, 1, 0, 1, 0, 1]) * 1e-15)
    pixels = np.asarray(Image.open(error_histogram(predictions, tmp_path / "e.png")).convert("L"))
    assert pixels.std() > 10
