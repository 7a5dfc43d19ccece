import ase.io
import pytest

from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.selection.gamma import gamma_candidates, select_d_optimal, select_top_gamma


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
