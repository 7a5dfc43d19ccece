"""The active-learning benchmark's machinery on a real (tiny) run: one seed, one round, random and
D-optimal selection on 40 ethanol frames from 2 starting molecules (2 O environments for 6
functions: the first potential has no γ for O). The science (which strategy wins) is the benchmark's
job. One run serves every test: each run costs three real fits."""

from __future__ import annotations

import json
import math

import matplotlib.image
import numpy as np
import pytest

from benchmarks.al_curves import labels_to_reach
from benchmarks.al_vs_random import QUICK, initial_choice, main, random_choice


INITIAL = 2  # starting molecules


@pytest.fixture(scope="module")
def quick_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("al-vs-random")
    status = main(["--quick", "--initial", str(INITIAL), "--pool", str(shared_data / "ethanol-revMD17.extxyz"),
                   "--name", "ethanol", "--out", str(out)])
    assert status == 0
    return out, json.loads((out / "al_vs_random_ethanol.json").read_text())


@pytest.mark.slow
def test_every_curve_has_one_point_per_round(quick_run):
    _, report = quick_run
    expected = [INITIAL + r * QUICK.batch for r in range(QUICK.rounds + 1)]
    assert sorted(report["runs"]) == sorted(QUICK.strategies)
    for strategy, curves in report["runs"].items():
        assert len(curves) == QUICK.seeds
        for curve in curves:
            assert curve["labels"] == expected
            assert [len(chosen) for chosen in curve["chosen"]] == [INITIAL] + [QUICK.batch] * QUICK.rounds
            errors = curve["energy_rmse"] + curve["force_rmse"]
            assert len(errors) == 2 * len(expected) and all(math.isfinite(e) and e > 0 for e in errors)
        assert report["summary"][strategy]["labels"] == expected


@pytest.mark.slow
def test_strategies_start_from_the_same_frames_and_potential(quick_run):
    _, report = quick_run
    first = {strategy: curves[0] for strategy, curves in report["runs"].items()}
    starts = {tuple(curve["chosen"][0]) for curve in first.values()}
    assert starts == {tuple(initial_choice(report["pool"]["frames"], INITIAL, seed=0))}
    assert len({curve["force_rmse"][0] for curve in first.values()}) == 1
    assert len({curve["energy_rmse"][0] for curve in first.values()}) == 1


@pytest.mark.slow
def test_no_frame_is_labelled_twice(quick_run):
    _, report = quick_run
    for curves in report["runs"].values():
        for curve in curves:
            labelled = [index for chosen in curve["chosen"] for index in chosen]
            assert len(labelled) == len(set(labelled)) == curve["labels"][-1]
            assert all(0 <= index < report["pool"]["frames"] for index in labelled)


@pytest.mark.slow
def test_random_selection_is_reproducible_by_seed(quick_run):
    _, report = quick_run
    curve = report["runs"]["random"][0]
    remaining = sorted(set(range(report["pool"]["frames"])) - set(curve["chosen"][0]))
    assert random_choice(remaining, QUICK.batch, seed=0, round_number=1) == curve["chosen"][1]
    assert random_choice(remaining, QUICK.batch, seed=1, round_number=1) != curve["chosen"][1]


@pytest.mark.slow
def test_writes_the_headline_json_and_a_real_plot(quick_run):
    out, report = quick_run
    random_final = report["runs"]["random"][0]["force_rmse"][-1]
    assert report["headline"]["target_force_rmse_mev_per_angstrom"] == pytest.approx(random_final)
    assert report["headline"]["random_budget_labels"] == INITIAL + QUICK.rounds * QUICK.batch
    assert set(report["headline"]["strategies"]) == set(QUICK.strategies)
    assert report["headline"]["strategies"]["random"]["label_saving_ratio"] == 1.0
    image = matplotlib.image.imread(out / "al_vs_random_ethanol.png")
    height, width = image.shape[:2]
    assert height > 200 and width > 400 and image.shape[2] in (3, 4)
    assert float(np.std(image[..., :3])) > 0.05  # lines and text, not a blank canvas


@pytest.mark.slow
def test_report_only_rederives_the_same_headline_from_the_runs(quick_run, tmp_path):
    out, report = quick_run
    copy = tmp_path / "al_vs_random_ethanol.json"
    stripped = {key: value for key, value in report.items() if key not in ("headline", "summary")}
    copy.write_text(json.dumps(stripped))
    assert main(["--report-only", str(copy)]) == 0
    rederived = json.loads(copy.read_text())
    assert rederived["headline"] == report["headline"] and rederived["summary"] == report["summary"]
    assert (tmp_path / "al_vs_random_ethanol.png").stat().st_size > 10_000


def test_labels_to_reach_interpolates_in_log_log():
    labels, rmse = [10, 20, 40], [100.0, 50.0, 20.0]
    target = math.sqrt(50.0 * 20.0)  # halfway between the last two points on the log axis
    assert labels_to_reach(labels, rmse, target) == pytest.approx(math.sqrt(20 * 40))
    assert labels_to_reach(labels, rmse, 50.0) == pytest.approx(20)
    assert labels_to_reach(labels, rmse, 150.0) == 10
    assert labels_to_reach(labels, rmse, 19.9) is None


def test_bad_frame_is_named_and_nothing_is_written(tmp_path, capsys):
    pool = tmp_path / "pool.extxyz"
    header = 'Lattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:3 pbc="T T T"'
    pool.write_text(f"1\n{header} energy=-1.0\nCu 0 0 0 0 0 0\n"
                    f"1\n{header} energy=nan\nCu 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    assert main(["--pool", str(pool), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert str(pool) in message and "frame 1" in message and "energy" in message
    assert not out.exists()


@pytest.mark.slow
def test_two_starting_molecules_run_and_report_the_species_without_gamma(quick_run):
    """Ethanol from 2 starting molecules: 2 O environments for 6 functions. The first fit used to fail
    in pace_activeset; now the run finishes and says, per species, where it stands."""
    _, report = quick_run
    assert report["settings"]["initial"] == 2
    assert report["pool"]["atoms_per_element"] == {"C": 80, "H": 240, "O": 40}  # 40 molecules
    for strategy, curves in report["runs"].items():
        [curve] = curves
        assert curve["labels"] == [2, 2 + QUICK.batch]
        assert curve["species_without_gamma"][0] == ["O"]  # 2 O environments: no γ
        assert curve["species_without_gamma"][1] == []  # 5 O environments are enough for its functions
        assert set(curve["force_rmse_per_element"][0]) == {"C", "H", "O"}
        assert all(math.isfinite(v) and v > 0 for point in curve["force_rmse_per_element"] for v in point.values())
        assert report["species_without_gamma"][strategy] == {"O": [2 + QUICK.batch]}
