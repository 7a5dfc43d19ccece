"""A generation's evaluation on a split of its dataset: what the train flow and the campaign publish."""

import json

import numpy as np
import pytest
from PIL import Image

from mlip_autopipec.backends.pacemaker import make_calculator
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.validation.evaluation import evaluate_on_split

pytestmark = pytest.mark.slow


def test_errors_plots_and_gamma_of_the_test_split(generation_1, cu_manifest):
    evaluation = evaluate_on_split(generation_1.artifact, cu_manifest, name="check")
    frames = [f for _, f in read_labelled_frames(cu_manifest.path_of("extxyz", "test")) if isinstance(f, LabelledFrame)]
    calculator = make_calculator(generation_1.artifact)
    per_atom = []
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        atoms.get_potential_energy()
        per_atom.append(np.array(calculator.results["gamma"]))
    gamma = evaluation["gamma"]
    assert gamma["structures"] == len(frames) and gamma["atoms"] == sum(len(f.atoms) for f in frames)
    assert gamma["max"] == pytest.approx(max(g.max() for g in per_atom))
    assert gamma["atom_median"] == pytest.approx(np.median(np.concatenate(per_atom)))
    assert evaluation["metrics"]["frames"] == len(frames)

    written = json.loads((generation_1.directory / "report" / "evaluation-check.json").read_text())
    assert written["metrics"] == pytest.approx(evaluation["metrics"])
    assert set(evaluation["plots"]) == {"parity", "errors", "gamma"}
    for path in evaluation["plots"].values():
        with Image.open(path) as picture:
            assert picture.size[0] > 300 and len(set(picture.convert("L").getdata())) > 10
