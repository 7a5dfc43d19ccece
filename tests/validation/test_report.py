"""validation_metrics.json, report.md and the plots, with EMT standing in for a trained potential."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.validation.physical import cubic_crystal
from mlip_autopipec.validation.report import (
    load_potential,
    load_validation_frames,
    report_markdown,
    validate_potential,
)


def labelled_frames(count: int = 6, seed: int = 0) -> list[LabelledFrame]:
    frames = []
    for index in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
        if index % 2:
            atoms.symbols[0] = "Ag"
        atoms.rattle(0.05, seed=seed + index)
        atoms.calc = EMT()
        frames.append(LabelledFrame(atoms=atoms.copy(), energy=atoms.get_potential_energy(),
                                    forces=atoms.get_forces(), stress=atoms.get_stress()))
    return frames


def assert_real_png(path, min_bytes: int = 5000) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > min_bytes, path
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert float(np.std(pixels[..., :3])) > 0.02, f"{path} is blank"


class Shifted(EMT):
    """EMT ±2 meV/atom (+ with silver, - without) and forces off by ±10 meV/Å per component:
    known, non-zero errors. (Errors must not all be equal: error_histogram cannot bin a zero range.)"""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        sign = 1.0 if "Ag" in self.atoms.get_chemical_symbols() else -1.0
        self.results["energy"] = self.results["energy"] + sign * 0.002 * len(self.atoms)
        if "forces" in self.results:
            self.results["forces"] = self.results["forces"] + np.array([0.01, -0.01, 0.01])


def test_validation_writes_metrics_report_and_plots(tmp_path):
    frames = labelled_frames()
    metrics = validate_potential(Shifted(), frames, tmp_path / "out", labels=[f"f{i}" for i in range(6)],
                                 reference=EMT(), reference_name="emt",
                                 structure=cubic_crystal("Cu", "fcc", 3.61), title="shifted EMT")
    saved = json.loads((tmp_path / "out" / "validation_metrics.json").read_text())
    assert saved["test_set"]["energy_rmse_mev_per_atom"] == pytest.approx(2.0, rel=1e-6)
    assert saved["test_set"]["forces_rmse_mev_per_angstrom"] == pytest.approx(10.0, rel=1e-6)
    assert set(saved["per_element"]) == {"Ag", "Cu"} and saved["per_element"]["Ag"]["atoms"] == 3
    assert len(saved["worst_frames"]) == 5 and saved["worst_frames"][0]["label"].startswith("f")
    physical = saved["physical"]
    assert physical["reference_name"] == "emt" and physical["potential"]["born_stable"] is True
    # The pure-Cu crystal sees a constant energy shift: no change of volume or curvature.
    for name, rel in physical["relative_errors"].items():
        assert abs(rel) < 1e-3, (name, rel)
    assert saved == json.loads(json.dumps(metrics, default=float))
    assert set(saved["plots"]) == {"parity", "errors", "eos"}  # EMT reports no gamma
    for filename in saved["plots"].values():
        assert_real_png(tmp_path / "out" / filename)
    report = (tmp_path / "out" / "report.md").read_text()
    for filename in saved["plots"].values():
        assert f"]({filename})" in report
    assert "mechanically unstable" not in report
    assert "C44 (GPa)" in report and "| energy (meV/atom) | 2.000 |" in report


def test_report_without_physical_checks(tmp_path):
    metrics = validate_potential(EMT(), labelled_frames(3), tmp_path, title="EMT")
    assert metrics["physical"] is None and set(metrics["plots"]) == {"parity", "errors"}
    assert metrics["gamma"] is None  # EMT has no extrapolation grade
    assert metrics["test_set"]["energy_rmse_mev_per_atom"] == 0.0
    assert "Physical checks" not in report_markdown(metrics)
    assert metrics["stress"]["frames"] == 3.0 and metrics["stress"]["stress_rmse_gpa"] < 1e-9


def test_stress_errors_in_gpa(tmp_path):
    from ase.units import GPa

    from mlip_autopipec.validation.report import stress_errors

    frames = labelled_frames(2)
    frames[0].stress = frames[0].stress + 1.0 * GPa  # 1 GPa off in every component of one frame
    frames[1].stress = None  # unlabelled: not counted
    errors = stress_errors(EMT(), frames)
    assert errors["frames"] == 1.0 and errors["stress_rmse_gpa"] == pytest.approx(1.0, rel=1e-6)
    assert stress_errors(EMT(), frames[1:]) is None


def test_gamma_histogram_when_the_calculator_reports_gamma(tmp_path):
    class WithGamma(EMT):
        def calculate(self, atoms=None, properties=("energy",), system_changes=None):
            super().calculate(atoms, properties, system_changes or [])
            self.results["gamma"] = np.linspace(0.1, 2.0, len(self.atoms)) * (1 + self.atoms.positions[0, 0])

    frames = labelled_frames(6)
    metrics = validate_potential(WithGamma(), frames, tmp_path, title="gamma")
    assert "gamma" in metrics["plots"] and math.isfinite(metrics["test_set"]["max_gamma"])
    expected = [np.linspace(0.1, 2.0, len(f.atoms)) * (1 + f.atoms.positions[0, 0]) for f in frames]
    gamma = metrics["gamma"]
    assert gamma["atoms"] == sum(map(len, expected)) and gamma["structures"] == 6
    assert gamma["max"] == pytest.approx(max(g.max() for g in expected))
    assert gamma["atom_fraction_above_1"] == pytest.approx(np.mean(np.concatenate(expected) > 1.0))
    assert_real_png(tmp_path / "gamma.png")
    assert "](gamma.png)" in (tmp_path / "report.md").read_text()


def test_frames_from_files_skip_unlabelled_and_name_missing_files(tmp_path):
    labelled = [frame.to_atoms() for frame in labelled_frames(2)]
    unlabelled = bulk("Cu", cubic=True)
    write(tmp_path / "data.extxyz", [labelled[0], unlabelled, labelled[1]])
    frames, labels, skipped = load_validation_frames([tmp_path / "data.extxyz"])
    assert len(frames) == 2 and labels == ["data.extxyz:0", "data.extxyz:2"]
    assert len(skipped) == 1 and skipped[0]["frame"] == 1
    with pytest.raises(FileNotFoundError, match="missing.extxyz"):
        load_validation_frames([tmp_path / "data.extxyz", tmp_path / "missing.extxyz"])
    write(tmp_path / "empty-labels.extxyz", [unlabelled])
    with pytest.raises(ValueError, match="no labelled frames"):
        load_validation_frames([tmp_path / "empty-labels.extxyz"])


def test_load_potential_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_potential(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="artifact.json"):
        load_potential(tmp_path)
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ValueError, match="model.txt"):
        load_potential(tmp_path / "model.txt")


def test_a_yaml_that_is_no_potential_is_named(tmp_path):
    (tmp_path / "input.yaml").write_text("cutoff: 5\nfit: {maxiter: 3}\n")
    with pytest.raises(ValueError, match="input.yaml is not a Pacemaker potential"):
        load_potential(tmp_path / "input.yaml")


def test_a_check_the_reference_cannot_do_is_skipped_and_the_report_kept(tmp_path):
    """EMT has no parameters for iron: the physical check fails, the errors and report stay."""
    metrics = validate_potential(Shifted(), labelled_frames(4), tmp_path / "out", reference=EMT(),
                                 reference_name="emt", structure=cubic_crystal("Fe", "bcc"), title="shifted EMT")
    saved = json.loads((tmp_path / "out" / "validation_metrics.json").read_text())
    assert saved["test_set"]["energy_rmse_mev_per_atom"] == pytest.approx(2.0, rel=1e-6)
    assert saved["physical"]["skipped"].startswith("Fe2: NotImplementedError")
    assert "eos" not in metrics["plots"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Physical checks" in report and "Skipped: Fe2: NotImplementedError" in report
    assert "| energy (meV/atom) | 2.000 |" in report


def test_molecules_skip_the_crystal_checks_with_the_reason(tmp_path, shared_data):
    """`flows.validate --reference` on molecules used to build a bulk crystal of their first element
    and lose the report; now the checks are skipped and the report says why."""
    import ase.io

    from flows.validate import _default_structure

    molecules = tmp_path / "ethanol.extxyz"
    ase.io.write(molecules, ase.io.read(shared_data / "ethanol-revMD17.extxyz", ":4"))
    structure, skipped = _default_structure([str(molecules)])
    assert structure is None and "non-periodic" in skipped
    frames, labels, _ = load_validation_frames([molecules])
    metrics = validate_potential(EMT(), frames, tmp_path / "out", labels=labels, reference=EMT(),
                                 physical_skipped=skipped, title="EMT on ethanol")
    assert metrics["physical"] == {"skipped": skipped}
    assert math.isfinite(metrics["test_set"]["forces_rmse_mev_per_angstrom"])
    assert f"Skipped: {skipped}" in (tmp_path / "out" / "report.md").read_text()
    # a periodic file still gets its crystal
    assert _default_structure([str(shared_data / "Cu-I.extxyz")]) == ("Cu", None)
