"""evaluate / infer / export over a really trained MACE model."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest

from mlip_autopipec.backends.mace import make_calculator
from mlip_autopipec.backends.mace.export import (
    ExportManifest,
    calculator_from_manifest,
    export_model,
    load_exported_models,
)
from mlip_autopipec.backends.mace.inference import evaluate, infer, resolve_model_files

pytestmark = pytest.mark.slow


def test_evaluate_scores_energies_and_forces_and_energy_only_skips_forces(mace_generation, mace_manifest):
    test_file = mace_manifest.path_of("mace", "test")
    full = evaluate(mace_generation.directory, test_file).metrics
    assert full["frames"] == mace_manifest.counts["test"] and full["models"] == 1
    for key in ("energy_rmse_mev_per_atom", "energy_mae_mev_per_atom", "forces_rmse_mev_per_angstrom", "forces_mae_mev_per_angstrom"):
        assert np.isfinite(full[key]) and full[key] >= 0
    assert full["energy_mae_mev_per_atom"] <= full["energy_rmse_mev_per_atom"]
    # The plain extxyz export (ASE's energy=/forces) gives the same numbers as MACE's REF_ keys.
    plain = evaluate(mace_generation.directory, mace_manifest.path_of("extxyz", "test")).metrics
    assert plain["energy_rmse_mev_per_atom"] == pytest.approx(full["energy_rmse_mev_per_atom"], rel=1e-12)
    energy_only = evaluate(mace_generation.directory, test_file, energy_only=True).metrics
    assert "forces_rmse_mev_per_angstrom" not in energy_only
    assert energy_only["energy_rmse_mev_per_atom"] == pytest.approx(full["energy_rmse_mev_per_atom"], rel=1e-9)


def test_evaluate_names_the_frame_without_labels(mace_generation, tmp_path):
    unlabelled = tmp_path / "unlabelled.extxyz"
    ase.io.write(unlabelled, [_copper(), _copper()])
    with pytest.raises(ValueError, match=r"unlabelled.extxyz: frame 0 has no reference energy"):
        evaluate(mace_generation.directory, unlabelled)


def test_infer_writes_predictions_and_keeps_labels(mace_generation, mace_manifest, tmp_path):
    source = mace_manifest.path_of("extxyz", "test")
    output = infer(mace_generation.directory, source, tmp_path / "predicted.extxyz")
    original, predicted = ase.io.read(source, ":"), ase.io.read(output, ":")
    assert len(predicted) == len(original)
    calc = make_calculator(mace_generation.artifact, device="cpu")  # agrees with the written predictions
    for before, after in zip(original, predicted, strict=True):
        assert after.get_potential_energy() == pytest.approx(before.get_potential_energy())  # label kept
        atoms = before.copy()
        atoms.calc = calc
        assert after.info["MACE_energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-10)
        assert np.allclose(after.arrays["MACE_forces"], atoms.get_forces(), atol=1e-8)  # extxyz: 8 decimals
    energies = infer(mace_generation.directory, source, tmp_path / "energies.extxyz", energy_only=True)
    first = ase.io.read(energies, 0)
    assert "MACE_energy" in first.info and "MACE_forces" not in first.arrays


def test_committee_inference_writes_deviations(mace_generation, mace_manifest, tmp_path):
    model = mace_generation.artifact.path("model")
    output = infer([model, model], mace_manifest.path_of("extxyz", "test"), tmp_path / "committee.extxyz")
    frame = ase.io.read(output, 0)
    assert frame.info["MACE_max_force_std"] == 0.0 and frame.info["MACE_energy_std"] == 0.0  # identical members
    assert frame.arrays["MACE_forces_std"].shape == (len(frame),)


def test_export_writes_artifacts_that_load_back_into_a_working_calculator(mace_generation, mace_manifest, tmp_path):
    manifest_path = export_model(mace_generation.directory, tmp_path / "run")
    assert manifest_path == tmp_path / "run" / "artifacts" / "manifest.json"
    manifest = ExportManifest.load(manifest_path)
    manifest.verify()
    raw = json.loads(manifest_path.read_text())
    assert raw["weights"]["path"] == "weights.pt" and raw["model"]["path"] == "model.model"
    assert raw["config"]["epochs"] == mace_generation.config.epochs  # the training config travels along
    assert manifest.elements == ["Cu"] and manifest.r_max == pytest.approx(4.0)
    assert manifest.compiled_model is not None and manifest.versions["mace-torch"] == "0.3.16"
    assert resolve_model_files(manifest_path) == [manifest.path(manifest.model)]

    import torch

    compiled = torch.jit.load(str(manifest.path(manifest.compiled_model)))
    assert compiled is not None

    atoms = ase.io.read(mace_manifest.path_of("extxyz", "test"), 0)
    reference = atoms.copy()
    reference.calc = make_calculator(mace_generation.artifact, device="cpu")
    exported = atoms.copy()
    exported.calc = calculator_from_manifest(manifest_path, device="cpu")
    assert exported.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-12)
    # model.weights: a training checkpoint's weights loaded into the manifest's architecture.
    checkpoint = sorted((mace_generation.directory / "checkpoints").glob("*.pt"))[-1]
    models = load_exported_models(manifest_path, weights=checkpoint)
    state = torch.load(checkpoint, weights_only=False)["model"]
    assert all(torch.equal(models[0].state_dict()[key], value) for key, value in state.items())


def test_export_refuses_a_bare_checkpoint(mace_generation, tmp_path):
    checkpoint = sorted((mace_generation.directory / "checkpoints").glob("*.pt"))[-1]
    with pytest.raises(ValueError, match="holds only weights"):
        export_model(checkpoint, tmp_path / "run")
    assert not (tmp_path / "run" / "artifacts").exists()


def _copper():
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.6)


def test_a_delta_learned_generation_predicts_baseline_plus_mace(mace_generation, mace_manifest):
    from ase.calculators.emt import EMT

    from mlip_autopipec.calculators import CalculatorSpec

    delta = mace_generation.artifact.model_copy(update={"baseline": CalculatorSpec(factory="emt")})
    delta.generation_dir = mace_generation.directory
    atoms = ase.io.read(mace_manifest.path_of("extxyz", "test"), 0)
    parts = []
    for calculator in (EMT(), make_calculator(mace_generation.artifact, device="cpu")):
        copy = atoms.copy()
        copy.calc = calculator
        parts.append(copy.get_potential_energy())
    total = atoms.copy()
    total.calc = make_calculator(delta, device="cpu")
    assert total.get_potential_energy() == pytest.approx(sum(parts), rel=1e-12)
