"""The campaign's explore and select-and-queue steps: MACE committee selection by trust levels, and
every selected frame going through the DFT outbox (duplicates skipped, nothing queued twice)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from mlip_autopipec.campaign import steps
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.store import Status, StructureStore
from tests.campaign.test_config_and_records import MINIMAL

TINY_MACE = ("training: {backend: mace, committee_size: 2, num_channels: 8, max_L: 0, correlation: 2, "
             "r_max: 4.0, radial_MLP: [16, 16], epochs: 1, batch_size: 4, valid_fraction: 0.2, device: cpu}\n")


def _config(tmp_path, text: str) -> CampaignConfig:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return CampaignConfig.load(path)


@pytest.mark.parametrize("text, words", [
    (MINIMAL + "selection: {method: committee}\n", "'committee' needs a MACE committee"),
    (MINIMAL + TINY_MACE.replace("committee_size: 2", "committee_size: 1") + "selection: {method: committee}\n",
     "committee_size >= 2"),
    (MINIMAL + TINY_MACE, "selection.method 'd_optimal' needs the extrapolation grade"),
    (MINIMAL + "selection: {trust_lower: 0.3, trust_upper: 0.2}\n", "trust_upper must be above trust_lower"),
])
def test_selection_must_fit_the_backend(tmp_path, text, words):
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, text)
    assert words in str(caught.value)


def _write_frames(path, frames, key, values):
    for frame, value in zip(frames, values):
        frame.info[key] = value
        frame.info["md_step"] = int(1000 * value)
    ase.io.write(path, frames)
    return str(path)


def test_selected_frames_go_through_the_outbox(generation_1, tmp_path):
    config = _config(tmp_path, MINIMAL.replace("substitute: {Ni: 0.25}", "") +
                     "selection: {method: top_gamma, gamma_lower: 1.5, max_per_generation: 5}\n")
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    base.rattle(0.05, seed=1)
    near = base.copy()
    near.positions[0] += [0.002, 0.0, 0.0]  # far below the outbox tolerance: the same structure for DFT
    strained = base.copy()
    strained.set_cell(base.cell * 1.03, scale_atoms=True)
    known = base.copy()
    known.set_cell(base.cell * 0.97, scale_atoms=True)
    trajectory = _write_frames(tmp_path / "walker-000.extxyz", [base, near, strained, known.copy()],
                               "max_gamma", [2.0, 3.0, 4.0, 1.2])

    first = steps.select_and_queue(config, generation_1.artifact, [trajectory], generation=0)
    # γ 1.2 is known; of the three candidates, the one near its twin is skipped.
    assert (first.candidates, first.selected, first.queued) == (3, 3, 2)
    assert (first.skipped_exact, first.skipped_near) == (0, 1)
    pending = list(StructureStore(config.store_url, campaign=config.campaign).select(Status.PENDING, generation=1))
    assert len(pending) == 2
    submitted = (config.workdir / "outbox" / "dft_submit.jsonl").read_text().splitlines()
    assert len(submitted) == 2 and all("walker-000:md-step-" in line for line in submitted)

    again = steps.select_and_queue(config, generation_1.artifact, [trajectory], generation=0)
    assert again.queued == 0 and again.skipped_exact + again.skipped_near == 3
    assert len(list(StructureStore(config.store_url, campaign=config.campaign).select(Status.PENDING))) == 2


@pytest.mark.slow
def test_a_mace_committee_explores_and_selects_between_its_trust_levels(mace_committee, tmp_path):
    config = _config(tmp_path, MINIMAL.replace("substitute: {Ni: 0.25}", "") + TINY_MACE +
                     "exploration: {temperatures_K: [1200], walkers_per_temperature: 1, steps: 24, record_every: 3}\n"
                     "selection: {method: committee, trust_lower: 1.0e-6, trust_upper: 100.0, max_per_generation: 3}\n")
    explored = steps.explore(config, mace_committee, generation=0)
    frames = ase.io.read(explored.trajectories[0], ":")
    deviations = [frame.info["max_force_std"] for frame in frames]
    assert len(frames) == 8 and explored.uncertainty == pytest.approx(deviations)
    assert all(frame.arrays["forces_std"].shape == (len(frame),) for frame in frames)
    assert np.ptp(deviations) > 0  # two differently seeded models disagree, and not uniformly

    # Trust levels taken from the walk: the lowest frame is "known", the highest "failed".
    ordered = sorted(deviations)
    config.selection.trust_lower = (ordered[0] + ordered[1]) / 2
    config.selection.trust_upper = (ordered[-2] + ordered[-1]) / 2
    queued = steps.select_and_queue(config, mace_committee, explored.trajectories, generation=0)
    assert queued.candidates == 6 and queued.selected == 3
    assert len(list(StructureStore(config.store_url, campaign=config.campaign).select(Status.PENDING,
                                                                                    generation=1))) == 3
    submitted = [json.loads(line) for line in (config.workdir / "outbox" / "dft_submit.jsonl").read_text().splitlines()]
    chosen_steps = sorted(int(record["origin"].rsplit("-", 1)[1]) for record in submitted)
    expected = sorted(frames[i].info["md_step"] for i in np.argsort(deviations)[::-1][1:4])
    assert chosen_steps == expected  # the three most uncertain frames below trust_upper


@pytest.fixture(scope="module")
def mace_committee(shared_data, tmp_path_factory):
    """A real committee of two 1-epoch MACE models on small Cu-I structures."""
    from mlip_autopipec.backends.mace import MaceTrainer
    from mlip_autopipec.config.mace import MaceConfig
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames

    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")
              if isinstance(frame, LabelledFrame) and len(frame.atoms) <= 8][:24]
    manifest = export_dataset([ExportItem(frame, f"f{i}") for i, frame in enumerate(frames)],
                              tmp_path_factory.mktemp("committee-data"), test_fraction=0.2, seed=0,
                              formats=["mace", "extxyz"])
    config = MaceConfig(num_channels=8, max_L=0, correlation=2, r_max=4.0, radial_MLP=[16, 16], epochs=1,
                        batch_size=4, valid_fraction=0.2, seed=1, device="cpu", committee_size=2,
                        timeout_seconds=300)
    return MaceTrainer().train(manifest, config, tmp_path_factory.mktemp("committee") / "gen-000")


JITTER_RULES = """
jitter: {sigma: 0.05}
quench: {method: none}
pipeline:
  validators: [{name: min_dist, min_factor: 0.5}]
  trigger: {max_force: 1000.0}
  recorders: [step_trace]
"""


def test_the_sampling_engine_explores_for_the_campaign(generation_1, tmp_path):
    (tmp_path / "rules.yaml").write_text(JITTER_RULES)
    config = _config(tmp_path, MINIMAL.replace(", substitute: {Ni: 0.25}", "") +
                     "exploration: {engine: sampling, sampling_rules: rules.yaml, sampling_steps: 4}\n"
                     "selection: {method: top_gamma, gamma_lower: 1.0, gamma_upper: 1.0e9, max_per_generation: 2}\n")
    artifact = _private_copy(generation_1, tmp_path)  # exploration writes into the generation's directory
    explored = steps.explore(config, artifact, generation=0)
    [trajectory] = explored.trajectories
    frames = ase.io.read(trajectory, ":")
    records = [json.loads(line) for line in
               (artifact.generation_dir / "explore" / "sample-000" / "steps.jsonl").read_text().splitlines()]
    accepted = [record for record in records if record["accepted"]]
    assert len(frames) == len(accepted) == 4 and explored.walkers == 1
    assert [frame.info["max_gamma"] for frame in frames] == pytest.approx([r["max_gamma_pre"] for r in accepted])
    assert explored.uncertainty == pytest.approx([frame.info["max_gamma"] for frame in frames])

    queued = steps.select_and_queue(config, artifact, explored.trajectories, generation=0)
    assert queued.selected == 2
    rows = list(StructureStore(config.store_url, campaign=config.campaign).select(Status.PENDING, generation=1))
    assert {row.source for row in rows} == {"sampling"} and len(rows) == queued.queued


def _private_copy(generation, tmp_path):
    from mlip_autopipec.backends.base import PotentialArtifact

    target = tmp_path / "gen-copy"
    shutil.copytree(generation.directory, target, ignore=shutil.ignore_patterns("explore"))
    return PotentialArtifact.load(target)


def test_sampling_needs_its_rules(tmp_path):
    with pytest.raises(ConfigError, match="engine 'sampling' needs sampling_rules"):
        _config(tmp_path, MINIMAL + "exploration: {engine: sampling}\n")


def test_generation_0_can_be_direct_sampled_from_a_raw_pool(tmp_path, shared_data):
    pool = ase.io.read(shared_data / "Cu-I.extxyz", ":40")
    unlabelled = [bulk("Cu", "fcc", a=3.61) * (2, 1, 1), bulk("Cu", "bcc", a=2.87) * (2, 1, 1)]
    ase.io.write(tmp_path / "pool.extxyz", pool)
    ase.io.write(tmp_path / "geometry-only.extxyz", unlabelled)
    config = _config(tmp_path, MINIMAL + "bootstrap: {per_seed: 2, pool: [pool.extxyz, geometry-only.extxyz], "
                                         "pool_pick: 5}\n")
    added = steps.prepare(config)
    store = StructureStore(config.store_url, campaign=config.campaign)
    direct = [row for row in store.select(Status.PENDING, generation=0) if row.source == "direct"]
    assert added.bootstrap_added == 2 + 5 and len(direct) == 5
    # Pool labels are not carried over: the campaign's labeler labels every row.
    assert all(row.frame.energy is None for row in direct)
    pool_sizes = {len(atoms) for atoms in pool + unlabelled}
    assert {len(row.frame.atoms) for row in direct} <= pool_sizes
    assert steps.prepare(config).bootstrap_added == 0  # idempotent


def test_a_pool_needs_no_seeds_copies_but_something_must_train(tmp_path):
    with pytest.raises(ConfigError, match="nothing to train on"):
        _config(tmp_path, MINIMAL + "bootstrap: {per_seed: 0}\n")


EXPLORE_FEW = "exploration: {temperatures_K: [300, 1200], walkers_per_temperature: 2, steps: 30, record_every: 5}\n"
TWO_SEEDS = "campaign: c\nworkdir: run\nseeds:\n  - {bulk: Cu, repeat: [2, 2, 2]}\n  - {bulk: Cu, repeat: [3, 1, 1]}\n"


@pytest.mark.parametrize("engine", ["md", "both"])
def test_each_md_walker_gets_the_seed_temperature_random_seed_and_file_of_the_serial_loop(
        engine, generation_1, tmp_path, monkeypatch):
    (tmp_path / "rules.yaml").write_text(JITTER_RULES)
    config = _config(tmp_path, TWO_SEEDS + EXPLORE_FEW.replace("steps: 30", "steps: 5").replace(
        "exploration: {", f"exploration: {{engine: {engine}, sampling_rules: rules.yaml, sampling_steps: 2, "))
    calls = []
    real_walker = steps.run_walker

    def recording_walker(structure, calculator, settings, trajectory):  # the real MD, its arguments noted
        calls.append((len(structure), settings.temperature_K, settings.seed, Path(trajectory).name))
        return real_walker(structure, calculator, settings, trajectory)

    monkeypatch.setattr(steps, "run_walker", recording_walker)
    artifact = _private_copy(generation_1, tmp_path)
    whole = steps.explore(config, artifact, generation=3)

    # The loop the walkers' numbering must reproduce: seed by seed, temperature by temperature,
    # numbered after the sampling walks (one per seed); random seed 1000 * seed + 100 * generation + number.
    expected, number = [], (2 if engine == "both" else 0)
    for atoms_per_seed in (32, 12):
        for temperature in (300.0, 1200.0):
            for _ in range(2):
                expected.append((atoms_per_seed, temperature, 300 + number, f"walker-{number:03d}.extxyz"))
                number += 1
    assert calls == expected
    assert steps.md_walker_indices(config) == [int(name[7:10]) for *_, name in expected]
    assert whole.walkers == 8 + (2 if engine == "both" else 0)
    assert [len(ase.io.read(path, ":")[0]) for path in whole.trajectories[-8:]] == [32] * 4 + [12] * 4

    calls.clear()
    alone = [steps.explore_md_walker(config, artifact, 3, index) for index in reversed(steps.md_walker_indices(config))]
    assert calls == expected[::-1]
    with pytest.raises(ValueError, match="the MD walkers given are not this exploration's"):
        steps.explore(config, artifact, 3, md_walkers=alone)  # out of order
    with pytest.raises(ValueError, match=r"no MD walker 99 .* walkers \d+\.\.\d+"):
        steps.explore_md_walker(config, artifact, 3, 99)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["top_gamma", "d_optimal"])
def test_frames_with_a_species_without_gamma_are_selected_as_uncertain(one_ni, tmp_path, method):
    """The one-Ni potential has no γ for Ni. Explored frames: two Cu cells with a γ above
    gamma_lower, and a Cu cell with Ni whose γ reads 'known'. The Ni cell is a candidate all the same
    and, one label allowed, it is the one queued."""
    from tests.conftest import doped_cu_cells

    artifact, _ = one_ni
    config = _config(tmp_path, MINIMAL + f"selection: {{method: {method}, gamma_lower: 1.5, max_per_generation: 1}}\n")
    frames = [frame.atoms for frame in doped_cu_cells(2, {}, seed=21) + doped_cu_cells(1, {"Ni": 2}, seed=22)]
    frames[0].set_cell(frames[0].cell * 0.92, scale_atoms=True)
    frames[1].set_cell(frames[1].cell * 1.08, scale_atoms=True)
    trajectory = _write_frames(tmp_path / "walker-000.extxyz", frames, "max_gamma", [2.0, 2.5, 0.9])
    queued = steps.select_and_queue(config, artifact, [trajectory], generation=0)
    assert (queued.candidates, queued.selected, queued.queued) == (3, 1, 1)
    [row] = StructureStore(config.store_url, campaign=config.campaign).select(Status.PENDING, generation=1)
    assert "Ni" in row.frame.atoms.get_chemical_symbols()


@pytest.mark.slow
def test_a_seed_element_the_potential_never_saw_is_a_clear_error(generation_1, tmp_path):
    """The Cu-only potential exploring a Cu-Ni seed: the error names the seed and Ni, before any MD."""
    config = _config(tmp_path, MINIMAL)
    for run in (lambda: steps.explore(config, generation_1.artifact, generation=0),
                lambda: steps.explore_md_walker(config, generation_1.artifact, generation=0, index=0)):
        with pytest.raises(ValueError, match=r"seeds\[0\] \(.*\) holds \['Ni'\], which the potential") as caught:
            run()
        assert "bootstrap" in str(caught.value)
