"""Real pacemaker fits on Cu DFT data: outputs, gamma, fine-tuning, upfitting, delta learning."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from ase.calculators.emt import EMT

from mlip_autopipec.backends import GenerationExistsError, PotentialArtifact, Trainer, get_trainer
from mlip_autopipec.backends.pacemaker import BaselinePlusACECalculator, PacemakerTrainer
from mlip_autopipec.calculators import CalculatorSpec

pytestmark = pytest.mark.slow


def _structures(path) -> list:
    return list(pd.read_pickle(path, compression="gzip")["ase_atoms"])


def test_generation_holds_potential_active_set_and_provenance(generation_1, cu_manifest):
    artifact = generation_1.artifact
    for role in ("potential_yaml", "potential_yace", "active_set", "input_yaml", "log", "metrics_json"):
        assert artifact.path(role).stat().st_size > 0, role
    reloaded = PotentialArtifact.load(generation_1.directory)
    reloaded.verify()
    assert reloaded.digests == artifact.digests
    assert reloaded.dataset_digest == cu_manifest.digest
    assert reloaded.config_digest == generation_1.config.digest()
    assert reloaded.elements == ["Cu"]
    assert reloaded.version.startswith("pacemaker 0.4")
    # potential.yaml is pacemaker's output_potential.yaml, untouched.
    pacemaker_output = generation_1.directory / "output_potential.yaml"
    assert artifact.path("potential_yaml").read_bytes() == pacemaker_output.read_bytes()


def test_metrics_are_finite_and_the_fit_learned(generation_1):
    metrics = generation_1.artifact.metrics
    for split in ("train", "test"):
        for name in ("energy_rmse_mev_per_atom", "energy_mae_mev_per_atom",
                     "forces_rmse_mev_per_angstrom", "forces_mae_mev_per_angstrom"):
            assert math.isfinite(metrics[f"{split}_{name}"]) and metrics[f"{split}_{name}"] >= 0
    history = json.loads(generation_1.artifact.path("metrics_json").read_text())["history"]["train"]
    assert history[-1]["loss"] < 1e-2 * history[0]["loss"]  # starts at ~3.7 eV/atom off
    assert metrics["iterations"] == generation_1.config.maxiter


def test_input_yaml_round_trips_as_pacemaker_reads_it(generation_1, cu_manifest):
    from ruamel.yaml import YAML  # the loader pacemaker itself uses

    text = generation_1.artifact.path("input_yaml").read_text()
    as_pacemaker_reads_it = YAML(typ="safe", pure=True).load(text)
    assert as_pacemaker_reads_it == yaml.safe_load(text)
    assert as_pacemaker_reads_it["backend"]["evaluator"] == "tensorpot"
    assert as_pacemaker_reads_it["data"]["filename"] == str(cu_manifest.path_of("pacemaker", "train").resolve())
    assert as_pacemaker_reads_it["data"]["test_filename"] == str(cu_manifest.path_of("pacemaker", "test").resolve())
    assert as_pacemaker_reads_it["fit"]["repulsion"] == "auto"


def test_progress_follows_the_iterations(generation_1):
    events = generation_1.progress
    iterations = [event.iteration for event in events if event.message.startswith("iteration")]
    assert iterations == list(range(generation_1.config.maxiter + 1))
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(event.loss is None or math.isfinite(event.loss) for event in events)


def test_gamma_is_about_one_on_training_data_and_large_on_a_compressed_cell(generation_1, cu_manifest):
    calculator = PacemakerTrainer().make_calculator(generation_1.artifact)
    training = _structures(cu_manifest.path_of("pacemaker", "train"))
    worst = 0.0
    for atoms in training:
        atoms.calc = calculator
        atoms.get_potential_energy()
        gamma = calculator.results["gamma"]
        assert gamma.shape == (len(atoms),)  # per atom
        worst = max(worst, float(gamma.max()))
    assert worst <= 1.1

    compressed = training[0].copy()
    compressed.set_cell(compressed.cell * 0.75, scale_atoms=True)
    compressed.calc = calculator
    compressed.get_potential_energy()
    assert calculator.results["gamma"].max() > 2.0


def test_a_finished_generation_is_never_overwritten(generation_1, cu_manifest):
    before = generation_1.artifact.path("potential_yaml").read_bytes()
    with pytest.raises(GenerationExistsError, match="never overwritten"):
        PacemakerTrainer().train(cu_manifest, generation_1.config, generation_1.directory)
    assert generation_1.artifact.path("potential_yaml").read_bytes() == before


def test_continue_starts_from_the_previous_loss_not_from_scratch(generation_1, cu_manifest, tiny_config,
                                                                 tmp_path):
    trainer = get_trainer("pacemaker")
    assert isinstance(trainer, Trainer)
    artifact = trainer.train(cu_manifest, tiny_config(maxiter=5), tmp_path / "gen-002",
                             initial_potential=generation_1.artifact)
    history_1 = json.loads(generation_1.artifact.path("metrics_json").read_text())["history"]["train"]
    history_2 = json.loads(artifact.path("metrics_json").read_text())["history"]["train"]
    assert history_2[0]["loss"] == pytest.approx(history_1[-1]["loss"], rel=1e-6)
    assert history_2[0]["loss"] < 1e-2 * history_1[0]["loss"]
    assert history_2[-1]["loss"] <= history_2[0]["loss"]
    assert artifact.initial_potential == generation_1.artifact.digest
    assert artifact.metrics["n_functions"] == generation_1.artifact.metrics["n_functions"]
    assert artifact.path("initial_potential").read_bytes() == generation_1.artifact.path("potential_yaml").read_bytes()


def test_upfit_grows_the_basis_starting_from_the_previous_potential(generation_1, cu_manifest, tiny_config,
                                                                    tmp_path):
    config = tiny_config(fine_tune="upfit", number_of_functions_per_element=16, ladder_step=3, maxiter=5)
    artifact = PacemakerTrainer().train(cu_manifest, config, tmp_path / "gen-002",
                                        initial_potential=generation_1.artifact)
    history = json.loads(artifact.path("metrics_json").read_text())["history"]["train"]
    gen_1_final_loss = generation_1.artifact.metrics["train_loss"]
    assert history[0]["loss"] == pytest.approx(gen_1_final_loss, rel=1e-6)  # new functions start at zero
    assert [row["ladder_step"] for row in history][-1] == 1  # two ladder steps: 10 -> 13 -> 16 functions
    assert artifact.metrics["n_functions"] == 16 > generation_1.artifact.metrics["n_functions"]


def test_delta_learning_returns_baseline_plus_ace(cu_manifest, tiny_config, tmp_path):
    config = tiny_config(baseline=CalculatorSpec(factory="emt"), maxiter=10)
    trainer = PacemakerTrainer()
    artifact = trainer.train(cu_manifest, config, tmp_path / "gen-delta")

    # The labels pacemaker saw are DFT minus EMT.
    labels = pd.read_pickle(cu_manifest.path_of("pacemaker", "train"), compression="gzip")
    delta = pd.read_pickle(artifact.path("delta_train"), compression="gzip")
    atoms = labels["ase_atoms"][2].copy()
    atoms.calc = EMT()
    assert delta["energy_corrected"][2] == pytest.approx(labels["energy_corrected"][2] - atoms.get_potential_energy())
    np.testing.assert_allclose(delta["forces"][2], labels["forces"][2] - atoms.get_forces())

    calculator = trainer.make_calculator(artifact)
    assert isinstance(calculator, BaselinePlusACECalculator)
    structure = labels["ase_atoms"][2].copy()
    structure.calc = calculator
    total = structure.get_potential_energy()
    ace_only = trainer.make_calculator(artifact.model_copy(update={"baseline": None}), with_uncertainty=False)
    baseline_part = structure.copy()
    baseline_part.calc = EMT()
    ace_part = structure.copy()
    ace_part.calc = ace_only
    assert total == pytest.approx(baseline_part.get_potential_energy() + ace_part.get_potential_energy())
    np.testing.assert_allclose(structure.get_forces(), baseline_part.get_forces() + ace_part.get_forces(),
                               atol=1e-10)
    assert calculator.results["gamma"].shape == (len(structure),)
    # The sum is back on the DFT scale: within the fit's error of the label.
    assert total / len(structure) == pytest.approx(labels["energy_corrected"][2] / len(structure), abs=0.3)
