"""γ of the test set in the validation report, on the real tiny Pacemaker potential (generation_1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.validation.report import load_potential, validate_potential
from tests.validation.test_report import assert_real_png


@pytest.mark.slow
def test_gamma_histogram_and_statistics_of_the_test_set(generation_1, cu_manifest, tmp_path):
    frames = [item for _, item in read_labelled_frames(cu_manifest.path_of("extxyz", "test"))
              if isinstance(item, LabelledFrame)]
    calculator, title = load_potential(generation_1.directory)  # picks up the generation's .asi
    metrics = validate_potential(calculator, frames, tmp_path, title=title)

    # The same grades straight from pyace, frame by frame, with the active set loaded by hand.
    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    reference = import_pyace().PyACECalculator(str(generation_1.artifact.path("potential_yaml")))
    reference.set_active_set(str(generation_1.artifact.path("active_set")))
    per_frame = []
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = reference
        atoms.get_potential_energy()
        per_frame.append(np.array(reference.results["gamma"], dtype=float))
    atom_gamma = np.concatenate(per_frame)
    max_gamma = np.array([gamma.max() for gamma in per_frame])

    gamma = json.loads((tmp_path / "validation_metrics.json").read_text())["gamma"]
    assert gamma == metrics["gamma"]
    assert gamma["structures"] == len(frames) and gamma["atoms"] == sum(len(f.atoms) for f in frames)
    assert gamma["max"] == pytest.approx(max_gamma.max(), rel=1e-9)
    assert gamma["structure_median"] == pytest.approx(np.median(max_gamma), rel=1e-9)
    assert gamma["atom_median"] == pytest.approx(np.median(atom_gamma), rel=1e-9)
    assert gamma["atom_fraction_above_1"] == pytest.approx(np.mean(atom_gamma > 1.0))
    assert gamma["structure_fraction_above_1"] == pytest.approx(np.mean(max_gamma > 1.0))
    assert gamma["atom_median"] <= gamma["atom_p90"] <= gamma["max"]
    assert metrics["test_set"]["max_gamma"] == pytest.approx(gamma["max"])

    assert metrics["plots"]["gamma"] == "gamma.png"
    assert_real_png(tmp_path / "gamma.png")
    report = (tmp_path / "report.md").read_text()
    assert "](gamma.png)" in report and f"{gamma['atoms']} atoms above γ = 1" in report
