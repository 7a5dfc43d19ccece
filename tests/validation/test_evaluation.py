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


def test_species_per_element_and_a_test_species_the_potential_never_saw(one_ni, tmp_path):
    """The one-Ni potential (Cu, Ni; no γ for Ni) on a test split that also holds a Cu cell with Au."""
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from tests.conftest import doped_cu_cells

    artifact, frames = one_ni
    test = doped_cu_cells(2, {"Ni": 2}, seed=11) + doped_cu_cells(1, {"Au": 1}, seed=12)
    items = [ExportItem(frame, f"frame-{index}") for index, frame in enumerate(frames + test)]
    manifest = export_dataset(items, tmp_path / "data", formats=["extxyz"],
                              splits={"train": list(range(len(frames))),
                                      "test": list(range(len(frames), len(items)))})
    evaluation = evaluate_on_split(artifact, manifest, name="minority")
    assert evaluation["metrics"]["frames"] == 2  # the Au cell is listed, not predicted
    [skipped] = evaluation["skipped_frames"]
    assert skipped["frame"] == 2 and "['Au'] not in the potential" in skipped["problem"]
    assert evaluation["per_element"]["Ni"]["atoms"] == 4 and evaluation["per_element"]["Cu"]["atoms"] == 60
    assert set(evaluation["species_without_gamma"]) == {"Ni"}
    only_au = export_dataset(items[-1:], tmp_path / "au", formats=["extxyz"], test_fraction=0.0)
    with pytest.raises(ValueError, match="no frame to evaluate"):
        evaluate_on_split(artifact, only_au)
