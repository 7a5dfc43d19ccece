"""input.yaml: the mapping from our config to pacemaker's keys, and pacemaker accepting it."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from mlip_autopipec.backends.pacemaker.input_yaml import build_input, write_input_yaml
from mlip_autopipec.backends.runner import resolve_executable, subprocess_environment
from mlip_autopipec.config.training import EarlyStoppingConfig, EnergyBasedWeighting, PacemakerConfig


def test_fresh_fit_has_every_section_and_our_basis():
    content = build_input(PacemakerConfig(cutoff=6.5), ["Cu", "Ni"], "/data/train.pckl.gzip", "/data/test.pckl.gzip")
    assert list(content) == ["seed", "potential", "data", "fit", "backend"]
    assert content["backend"]["evaluator"] == "tensorpot"
    assert content["data"] == {"filename": "/data/train.pckl.gzip", "test_filename": "/data/test.pckl.gzip"}
    potential = content["potential"]
    assert potential["elements"] == ["Cu", "Ni"]
    assert potential["bonds"]["ALL"]["rcut"] == 6.5
    assert potential["functions"]["ALL"] == {"nradmax_by_orders": [6, 3, 2], "lmax_by_orders": [0, 2, 1]}
    assert content["fit"]["repulsion"] == "auto"
    assert "ladder_step" not in content["fit"]


def test_no_test_split_and_no_repulsion_leave_their_keys_out():
    content = build_input(PacemakerConfig(repulsion=None), ["Cu"], "train.pckl.gzip")
    assert "test_filename" not in content["data"]
    assert "repulsion" not in content["fit"]


def test_continue_refits_the_previous_potential_file():
    content = build_input(PacemakerConfig(), ["Cu"], "train.pckl.gzip", initial_potential="initial_potential.yaml")
    assert content["potential"] == {"filename": "initial_potential.yaml"}
    assert "ladder_type" not in content["fit"]


def test_upfit_grows_from_the_initial_potential_with_a_ladder():
    config = PacemakerConfig(fine_tune="upfit", ladder_step=[5, 0.2], ladder_type="power_order")
    content = build_input(config, ["Cu"], "train.pckl.gzip", initial_potential="initial_potential.yaml")
    assert content["potential"]["initial_potential"] == "initial_potential.yaml"
    assert content["potential"]["functions"]["number_of_functions_per_element"] == 20
    assert content["fit"]["ladder_step"] == [5, 0.2]
    assert content["fit"]["ladder_type"] == "power_order"


@pytest.mark.parametrize("reference, expected", [(-0.5, -0.5), ({"Cu": -0.25}, {"Cu": -0.25}), ("auto", "auto")])
def test_reference_energy_is_passed_as_pacemaker_takes_it(reference, expected):
    content = build_input(PacemakerConfig(reference_energy=reference), ["Cu"], "train.pckl.gzip")
    assert content["data"]["reference_energy"] == expected


def test_written_file_round_trips(tmp_path):
    from ruamel.yaml import YAML  # pacemaker's own loader

    config = PacemakerConfig(weighting=EnergyBasedWeighting(), optimizer_options={"maxcor": 50},
                             early_stopping=EarlyStoppingConfig(min_relative_train_loss_per_iter=1e-5))
    content = build_input(config, ["Cu"], "/data/train.pckl.gzip", "/data/test.pckl.gzip")
    path = write_input_yaml(content, tmp_path / "input.yaml")
    assert YAML(typ="safe", pure=True).load(path.read_text()) == content == yaml.safe_load(path.read_text())


@pytest.mark.slow
def test_every_option_is_accepted_by_pacemaker(generation_1, cu_manifest, tmp_path):
    # --dry-run does everything up to the fit: parses input.yaml, builds the basis, loads the data.
    config = PacemakerConfig(
        fine_tune="upfit", number_of_functions_per_element=16, nradmax_by_orders=[5, 2, 1],
        lmax_by_orders=[0, 2, 1], ladder_step=[2, 0.2], ladder_type="power_order", optimizer="L-BFGS-B",
        optimizer_options={"maxcor": 50}, weighting=EnergyBasedWeighting(), reference_energy={"Cu": -0.1},
        early_stopping=EarlyStoppingConfig(min_relative_train_loss_per_iter=1e-5, patience=10), repulsion=None,
    )
    (tmp_path / "initial_potential.yaml").write_bytes(generation_1.artifact.path("potential_yaml").read_bytes())
    content = build_input(config, ["Cu"], str(cu_manifest.path_of("pacemaker", "train").resolve()),
                          str(cu_manifest.path_of("pacemaker", "test").resolve()), "initial_potential.yaml")
    write_input_yaml(content, tmp_path / "input.yaml")
    run = subprocess.run([resolve_executable("pacemaker"), "input.yaml", "--dry-run"], cwd=tmp_path,
                         env=subprocess_environment(), capture_output=True, text=True, timeout=240)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Dry run is finished" in log
    assert "Ladder-scheme fitting is ON" in log and "Ladder_type: power_order" in log
    assert "EnergyBasedWeightingPolicy" in log
    assert "Using {'Cu': -0.1} as single-atom energies" in log
