"""A minority species never costs the potential: real fits where one species has fewer training
environments than B-functions (one Ni atom per Cu cell with EMT labels; ten ethanol molecules from
revMD17, ten O atoms for twelve functions). `pace_activeset` stops on them; the trainer keeps the
potential, builds the active set species by species and says which species have no γ yet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ase.build import bulk

from mlip_autopipec.backends import PotentialArtifact, TrainingError
from mlip_autopipec.backends.pacemaker import PacemakerTrainer, make_calculator
from mlip_autopipec.backends.pacemaker.active_set import (
    UNDER_DETERMINED_MESSAGE,
    build_active_set,
    pseudo_inverse,
    read_summary,
)
from mlip_autopipec.backends.pacemaker.export import calculator_from_manifest, export_generation
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from tests.conftest import export_for_training


@pytest.fixture(scope="module")
def ethanol(shared_data, tiny_config, tmp_path_factory):
    """Ten revMD17 ethanol molecules: 20 C, 60 H and 10 O environments for 12 functions each."""
    frames = [frame for _, frame in read_labelled_frames(shared_data / "ethanol-revMD17.extxyz")
              if isinstance(frame, LabelledFrame)][:10]
    work = tmp_path_factory.mktemp("ethanol")
    config = tiny_config(number_of_functions_per_element=12, maxiter=10, display_step=10)
    artifact = PacemakerTrainer().train(export_for_training(frames, work / "data"), config, work / "gen-000")
    return artifact, frames


@pytest.mark.slow
def test_one_ni_atom_keeps_the_potential_and_names_ni_as_without_gamma(one_ni):
    artifact, frames = one_ni
    reloaded = PotentialArtifact.load(artifact.generation_dir)
    reloaded.verify()
    assert set(reloaded.species_without_gamma) == {"Ni"}
    assert "6 training environments for 10 B-functions" in reloaded.species_without_gamma["Ni"]
    # It was pace_activeset that stopped, and the per-species build that followed.
    log = artifact.path("log").read_text()
    assert UNDER_DETERMINED_MESSAGE in log and "species by species" in log
    summary = {s.element: s for s in read_summary(artifact.path("active_set_summary"))}
    assert (summary["Cu"].method, summary["Cu"].environments) == ("maxvol", 186)
    assert (summary["Ni"].method, summary["Ni"].environments, summary["Ni"].functions) == ("pseudo-inverse", 6, 10)
    with np.load(artifact.path("active_set")) as asi:
        assert sorted(asi.files) == ["Cu", "Ni"] and all(asi[key].shape == (10, 10) for key in asi.files)


@pytest.mark.slow
def test_the_kept_potential_predicts_and_grades_every_atom(one_ni):
    artifact, frames = one_ni
    calculator = make_calculator(artifact)
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        assert np.isfinite(atoms.get_potential_energy())
        gamma = np.asarray(calculator.results["gamma"])
        assert gamma.shape == (len(atoms),) and np.isfinite(gamma).all()
        cu = np.array(atoms.get_chemical_symbols()) == "Cu"
        assert gamma[cu].max() < 1.02  # training environments lie inside Cu's MaxVol active set
        # A training Ni environment is a row of the pseudo-inverted matrix, so its coefficients have
        # at most the norm of that row's unit vector: 0 < γ <= 1.
        assert 0 < gamma[~cu].max() <= 1 + 1e-9


@pytest.mark.slow
def test_the_export_of_such_a_generation_loads_with_gamma(one_ni, tmp_path):
    artifact, frames = one_ni
    manifest = export_generation(artifact.generation_dir, tmp_path / "run")
    calculator = calculator_from_manifest(manifest)
    atoms = frames[0].atoms.copy()
    atoms.calc = calculator
    atoms.get_potential_energy()
    assert len(calculator.results["gamma"]) == len(atoms)
    exported = json.loads((tmp_path / "run" / "artifacts" / "artifact.json").read_text())
    assert set(exported["species_without_gamma"]) == {"Ni"}


@pytest.mark.slow
def test_ethanol_with_few_oxygens_has_gamma_for_c_and_h_only(ethanol):
    artifact, frames = ethanol
    assert set(artifact.species_without_gamma) == {"O"}
    assert "10 training environments for 12 B-functions" in artifact.species_without_gamma["O"]
    summary = {s.element: (s.method, s.environments) for s in read_summary(artifact.path("active_set_summary"))}
    assert summary == {"C": ("maxvol", 20), "H": ("maxvol", 60), "O": ("pseudo-inverse", 10)}
    calculator = make_calculator(artifact)
    atoms = frames[0].atoms.copy()
    atoms.calc = calculator
    assert np.isfinite(atoms.get_forces()).all() and len(calculator.results["gamma"]) == 9


@pytest.mark.slow
def test_another_active_set_failure_still_fails_the_training(ethanol, tiny_config, tmp_path):
    """Fault injection: pacemaker's outputs copied from the real ethanol fit, and a pace_activeset
    that fails for another reason (out of memory). That is a real failure: no artifact."""
    artifact, frames = ethanol
    source = artifact.generation_dir
    fake = tmp_path / "pacemaker"
    fake.write_text("#!/bin/sh\n" + "".join(f"cp '{source / name}' .\n" for name in (
        "output_potential.yaml", "fitting_data_info.pckl.gzip", "metrics.txt")))
    broken = tmp_path / "pace_activeset"
    broken.write_text("#!/bin/sh\necho 'MemoryError: cannot allocate the projections'\nexit 1\n")
    for script in (fake, broken):
        script.chmod(0o755)
    shutil.copytree(source.parent / "data", tmp_path / "data")
    from mlip_autopipec.data.manifest import DatasetManifest

    manifest = DatasetManifest.load(tmp_path / "data")
    trainer = PacemakerTrainer(executables={"pacemaker": fake, "pace_activeset": broken})
    config = tiny_config(number_of_functions_per_element=12, maxiter=10, display_step=10)
    with pytest.raises(TrainingError, match="pace_activeset failed with exit code 1") as failure:
        trainer.train(manifest, config, tmp_path / "gen-000")
    assert "MemoryError" in failure.value.log_tail
    assert not (tmp_path / "gen-000" / "artifact.json").exists()


def test_pseudo_inverse_grades_known_environments_one_and_is_square():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 5))
    inverse = pseudo_inverse(rows, 5)
    assert inverse.shape == (5, 5)
    assert np.abs(rows @ inverse).max(axis=1) == pytest.approx(np.ones(3))
    # A direction none of the three spans is invisible to it: why such a species counts as uncertain.
    unseen = np.linalg.svd(rows)[2][-1]
    assert np.abs(unseen @ inverse).max() == pytest.approx(0.0, abs=1e-9)
    many = pseudo_inverse(rng.standard_normal((8, 5)), 5)
    assert many.shape == (5, 5) and np.isfinite(many).all()


@pytest.mark.slow
def test_an_element_without_environments_is_named(one_ni):
    """The basis knows Cu and Ni; a training set of pure Cu has no Ni environment at all."""
    artifact, _ = one_ni
    pure = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    pure.rattle(0.05, seed=3)
    inverse, species = build_active_set(artifact.path("potential_yaml"), [pure])
    by_element = {s.element: s for s in species}
    assert (by_element["Cu"].method, by_element["Cu"].environments) == ("maxvol", 108)
    assert by_element["Ni"].environments == 0 and "no environments" in by_element["Ni"].note
    assert not by_element["Ni"].has_gamma and inverse["Ni"].shape == (10, 10)


def test_the_module_names_a_bad_dataset_or_potential_without_a_traceback(tmp_path, capsys):
    from mlip_autopipec.backends.pacemaker.active_set import main

    dataset = tmp_path / "data.pckl.gzip"
    dataset.write_bytes(b"not a pickle")
    arguments = ["-o", str(tmp_path / "p.asi"), "-s", str(tmp_path / "p.json")]
    assert main([str(tmp_path / "p.yaml"), "-d", str(dataset), *arguments]) == 2
    assert f"error: {dataset}: cannot read the structures" in capsys.readouterr().err
    import pandas as pd

    pd.DataFrame({"ase_atoms": [bulk("Cu")]}).to_pickle(dataset, compression="gzip")
    assert main([str(tmp_path / "p.yaml"), "-d", str(dataset), *arguments]) == 2
    assert "p.yaml: no such potential file" in capsys.readouterr().err
    (tmp_path / "p.yaml").write_text("elements: [Cu]\nnot: a potential\n")
    assert main([str(tmp_path / "p.yaml"), "-d", str(dataset), *arguments]) == 2
    assert "p.yaml: cannot build the active set" in capsys.readouterr().err
    assert not (tmp_path / "p.asi").exists() and not (tmp_path / "p.json").exists()
