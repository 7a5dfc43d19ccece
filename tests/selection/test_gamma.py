import ase.io
import pytest

from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.selection.gamma import (
    frames_with_species,
    gamma_candidates,
    select_d_optimal,
    select_top_gamma,
)


def test_candidates_lie_between_the_bounds():
    assert gamma_candidates([0.5, 1.2, 3.0, 11.0, 2.0], lower=1.1, upper=10.0) == [1, 2, 4]
    assert gamma_candidates([0.5, 12.0], lower=1.1, upper=None) == [1]
    assert select_top_gamma([1.0, 5.0, 3.0, 5.0], 3) == [1, 3, 2]


@pytest.mark.slow
def test_d_optimal_selection_skips_what_the_potential_knows(generation_1, cu_manifest):
    training = ase.io.read(cu_manifest.path_of("extxyz", "train"), ":")
    known = [training[0].copy() for _ in range(4)]  # copies of a training structure: gamma ~ 1
    novel = []
    for factor in (0.86, 0.9, 1.15):
        atoms = training[0].copy()
        atoms.set_cell(atoms.cell * factor, scale_atoms=True)
        novel.append(atoms)
    frames = known + novel
    calculator = PacemakerTrainer().make_calculator(generation_1.artifact)
    gammas = []
    for atoms in frames:
        atoms.calc = calculator
        atoms.get_potential_energy()
        gammas.append(float(calculator.results["gamma"].max()))
    assert max(gammas[:4]) < 1.1 < min(gammas[4:])

    chosen = select_d_optimal(frames, generation_1.artifact.path("potential_yaml"),
                              generation_1.artifact.path("active_set"), count=2)
    assert 1 <= len(chosen) <= 2 and set(chosen) <= {4, 5, 6}


def test_frames_with_a_species_without_gamma_are_candidates_and_come_first():
    from ase import Atoms

    frames = [Atoms("Cu2"), Atoms("CuNi"), Atoms("Cu2"), Atoms("NiCu")]
    uncertain = frames_with_species(frames, {"Ni": "too few environments"})
    assert uncertain == [False, True, False, True]
    gammas = [0.5, 0.6, 3.0, 12.0]
    # Without the species rule only frame 2 is a candidate; Ni frames join unless beyond `upper`.
    assert gamma_candidates(gammas, lower=1.1, upper=10.0) == [2]
    assert gamma_candidates(gammas, lower=1.1, upper=10.0, uncertain=uncertain) == [1, 2]
    assert select_top_gamma(gammas, 2) == [3, 2]
    assert select_top_gamma(gammas, 3, uncertain) == [3, 1, 2]


@pytest.mark.slow
def test_d_optimal_takes_the_species_without_an_active_set_first(one_ni):
    """Cu cells with 0, 1 or 3 Ni atoms, the Cu ones strained so that their Cu atoms extend the
    active set: with Ni uncertain, the frames with most Ni come first; without, Ni is not special."""
    from tests.conftest import doped_cu_cells

    artifact, _ = one_ni
    frames = [frame.atoms for frame in doped_cu_cells(2, {}, seed=5)]
    for atoms in frames:
        atoms.set_cell(atoms.cell * 0.9, scale_atoms=True)
    frames += [frame.atoms for frame in doped_cu_cells(1, {"Ni": 3}, seed=6)]
    frames += [frame.atoms for frame in doped_cu_cells(1, {"Ni": 1}, seed=7)]
    frames += [frame.atoms for frame in doped_cu_cells(4, {}, seed=9)]  # near the training cells
    arguments = (frames, artifact.path("potential_yaml"), artifact.path("active_set"))
    assert select_d_optimal(*arguments, count=2, uncertain_species=artifact.species_without_gamma) == [2, 3]
    # Without the rule it is pace_select's own choice (pyace's select_structures_maxvol).
    import pandas as pd

    from mlip_autopipec.backends.pacemaker.quiet_import import import_pyace

    activelearning = import_pyace("pyace.activelearning")
    theirs = import_pyace("pyace.aceselect").select_structures_maxvol(
        pd.DataFrame({"ase_atoms": frames}), import_pyace().BBasisConfiguration(str(arguments[1])),
        extra_A0_projections_dict=activelearning.compute_A_active_inverse(
            activelearning.load_active_inverse_set(str(arguments[2]))),
        batch_size_option="none", gamma_tolerance=1.01, max_structures=8, maxvol_iters=300, maxvol_refinement=0)
    ours = select_d_optimal(*arguments, count=8)
    assert ours == [int(i) for i in theirs.index] and 2 <= len(ours) < 8  # some frames extend nothing


@pytest.mark.slow
def test_d_optimal_without_an_active_set_on_too_few_environments(one_ni):
    """No active set and fewer candidate environments than functions (one Ni atom): no
    under-determined MaxVol error, every such environment counts as new."""
    from tests.conftest import doped_cu_cells

    artifact, _ = one_ni
    frames = [frame.atoms for frame in doped_cu_cells(2, {"Ni": 1}, seed=8)]
    assert sorted(select_d_optimal(frames, artifact.path("potential_yaml"), None, count=5)) == [0, 1]
