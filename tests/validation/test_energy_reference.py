"""Errors are computed against the energy each backend fitted, on data where energy_corrected is
not energy: our evaluation of the test split equals the tool's own test metrics, for Pacemaker (the
dataset's energy_corrected column, and reference energies of its own: `reference_energy: auto`)
and MACE (total energy)."""

from __future__ import annotations

import pytest

from mlip_autopipec.data.export import ExportItem, export_dataset
from mlip_autopipec.data.frames import EnergyReference, LabelledFrame
from mlip_autopipec.validation.evaluation import evaluate_on_split
from tests.backends.mace.conftest import _tiny_mace_config
from tests.conftest import doped_cu_cells

pytestmark = pytest.mark.slow

# per-atom offsets far apart, as DFT's isolated-atom energies are: energy_corrected = energy - sum
OFFSETS = {"Cu": -3.27, "Ni": -5.81}


def corrected(frames: list[LabelledFrame]) -> list[LabelledFrame]:
    out = []
    for frame in frames:
        shift = sum(OFFSETS[symbol] for symbol in frame.atoms.get_chemical_symbols())
        out.append(LabelledFrame(frame.atoms, frame.energy, frame.forces, energy_corrected=frame.energy - shift))
    return out


@pytest.fixture(scope="module")
def cuni_manifest(tmp_path_factory):
    """16 Cu-Ni cells with 4 to 12 Ni atoms (so the offset differs per structure), 25 % test."""
    frames = []
    for seed, nickel in enumerate((4, 8, 12, 6)):
        frames += corrected(doped_cu_cells(4, {"Ni": nickel}, seed=seed))
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, tmp_path_factory.mktemp("cuni"), test_fraction=0.25, seed=0,
                          formats=["pacemaker", "mace", "extxyz"])


def test_energy_reference_of_a_frame():
    frame = corrected(doped_cu_cells(1, {"Ni": 3}))[0]
    assert EnergyReference().of(frame) == frame.energy
    assert EnergyReference("energy_corrected").of(frame) == frame.energy_corrected
    bare = LabelledFrame(frame.atoms, frame.energy, frame.forces)
    assert EnergyReference("energy_corrected").of(bare) == frame.energy  # no column: Pacemaker fits energy
    # reference energies of a fit: energy - sum + shift x atoms, as pyace's compute_corrected_energy
    fitted = EnergyReference("energy_corrected", {"Cu": -3.0, "Ni": -5.0, "shift": 0.5})
    assert fitted.of(bare) == pytest.approx(frame.energy - (29 * -3.0 + 3 * -5.0) + 0.5 * 32)


def test_pacemaker_on_energy_corrected_equals_its_own_test_metrics(cuni_manifest, tiny_config, tmp_path):
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    artifact = PacemakerTrainer().train(cuni_manifest, tiny_config(maxiter=15), tmp_path / "gen-000")
    assert artifact.energy_label == "energy_corrected" and artifact.reference_energies is None
    evaluation = evaluate_on_split(artifact, cuni_manifest)
    assert evaluation["energy_compared_with"].startswith("energy_corrected")
    ours, theirs = evaluation["metrics"], artifact.metrics
    assert ours["energy_rmse_mev_per_atom"] == pytest.approx(theirs["test_energy_rmse_mev_per_atom"], rel=1e-3)
    assert ours["forces_rmse_mev_per_angstrom"] == pytest.approx(theirs["test_forces_rmse_mev_per_angstrom"],
                                                                 rel=1e-3)
    assert ours["energy_rmse_mev_per_atom"] < 1000  # the offsets (eV per atom) are not in the error


def test_pacemaker_with_its_own_reference_energies(tmp_path, tiny_config):
    """`reference_energy: auto` on data without energy_corrected: Pacemaker subtracts per-element
    energies it fits itself; our errors use the ones it recorded in the potential."""
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    frames = []
    for seed, nickel in enumerate((4, 10, 16)):
        frames += doped_cu_cells(4, {"Ni": nickel}, seed=10 + seed)
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    manifest = export_dataset(items, tmp_path / "data", test_fraction=0.25, seed=0, formats=["pacemaker", "extxyz"])
    artifact = PacemakerTrainer().train(manifest, tiny_config(maxiter=15, reference_energy="auto"),
                                        tmp_path / "gen-000")
    assert set(artifact.reference_energies) >= {"Cu", "Ni"}
    evaluation = evaluate_on_split(artifact, manifest)
    assert evaluation["metrics"]["energy_rmse_mev_per_atom"] == pytest.approx(
        artifact.metrics["test_energy_rmse_mev_per_atom"], rel=1e-3)


def test_mace_on_total_energy_equals_its_own_test_table(cuni_manifest, tmp_path):
    from mlip_autopipec.backends.mace import MaceTrainer

    artifact = MaceTrainer().train(cuni_manifest, _tiny_mace_config(), tmp_path / "gen-000")
    assert artifact.energy_label == "energy"
    evaluation = evaluate_on_split(artifact, cuni_manifest)
    assert evaluation["energy_compared_with"] == "energy"
    ours, theirs = evaluation["metrics"], artifact.metrics
    # MACE prints its table to 0.1 meV
    assert ours["energy_rmse_mev_per_atom"] == pytest.approx(theirs["test_energy_rmse_mev_per_atom"], abs=0.051)
    assert ours["forces_rmse_mev_per_angstrom"] == pytest.approx(theirs["test_forces_rmse_mev_per_angstrom"],
                                                                 abs=0.051)
