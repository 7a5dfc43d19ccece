"""The campaign's learning curve: held-out RMSE vs labels, from generation records on disk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlip_autopipec.campaign.records import GenerationRecord, load_records
from mlip_autopipec.validation import plots
from tests.validation.test_report import assert_real_png


def record(generation: int, labels: int, energy_rmse: float, forces_rmse: float) -> GenerationRecord:
    return GenerationRecord(
        generation=generation, potential=f"gen-{generation:03d}/artifact.json", potential_digest="0" * 64,
        training_structures=labels, labels_total=labels, labels_added=labels // 3, labels_failed=0,
        held_out_energy_rmse_mev_per_atom=energy_rmse, held_out_forces_rmse_mev_per_angstrom=forces_rmse,
        explored_frames=40, fraction_below_gamma_lower=0.5, selected=10)


@pytest.fixture
def plotted(monkeypatch):
    """What each figure the plots module saves shows: its lines' (x, y) data, axis scales, texts."""
    captured: list[dict] = []
    save = plots._save

    def keep_contents(figure, target):
        captured.append({"lines": [line.get_xydata() for axis in figure.axes for line in axis.get_lines()],
                         "scales": [(axis.get_xscale(), axis.get_yscale()) for axis in figure.axes],
                         "texts": [[text.get_text() for text in axis.texts] for axis in figure.axes]})
        return save(figure, target)

    monkeypatch.setattr(plots, "_save", keep_contents)
    return captured


def test_learning_curve_plots_every_generation_from_its_record(tmp_path, plotted):
    rng = np.random.default_rng(7)
    labels = 12 * 2 ** np.arange(5) + rng.integers(0, 40, size=5)  # spans > 3x: log-log
    written = [record(g, int(n), float(e), float(f)) for g, n, e, f in
               zip(range(5), labels, np.sort(rng.uniform(1, 30, 5))[::-1], np.sort(rng.uniform(20, 300, 5))[::-1])]
    for item in reversed(written):  # the order on disk must not matter
        item.save(tmp_path / "generations")
    records = load_records(tmp_path / "generations")

    target = plots.learning_curve(records, tmp_path / "report" / "learning_curve.png", title="demo campaign")
    assert target == tmp_path / "report" / "learning_curve.png"
    assert_real_png(target)
    with Image.open(target) as image:
        assert image.size == (1100, 462)  # figsize (10, 4.2) inches at 110 dpi

    energy_line, force_line = plotted[0]["lines"]
    # x: the labels each generation was trained on, not the total after its own labelling step
    trained_on = [r.labels_total - r.labels_added for r in written]
    np.testing.assert_array_equal(energy_line[:, 0], trained_on)
    np.testing.assert_array_equal(energy_line[:, 1], [r.held_out_energy_rmse_mev_per_atom for r in written])
    np.testing.assert_array_equal(force_line[:, 0], trained_on)
    np.testing.assert_array_equal(force_line[:, 1], [r.held_out_forces_rmse_mev_per_angstrom for r in written])
    assert plotted[0]["scales"] == [("log", "log"), ("log", "log")]
    assert plotted[0]["texts"] == [[f"gen {r.generation}" for r in written]] * 2


def test_a_single_generation_is_plotted_on_linear_axes_and_no_records_is_an_error(tmp_path, plotted):
    plots.learning_curve([record(1, 36, 4.0, 80.0)], tmp_path / "one.png")
    assert_real_png(tmp_path / "one.png")
    assert plotted[0]["lines"][0].tolist() == [[24.0, 4.0]] and plotted[0]["lines"][1].tolist() == [[24.0, 80.0]]
    assert plotted[0]["scales"] == [("linear", "linear")] * 2
    with pytest.raises(ValueError, match="no generation records"):
        plots.learning_curve([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
