import pytest

from mlip_autopipec.campaign.config import CampaignConfig, StopSettings, load_campaign, load_labeling
from mlip_autopipec.campaign.records import GenerationRecord, gamma_statistics, stop_reason
from mlip_autopipec.campaign.structures import build_seeds, perturbed_copies
from mlip_autopipec.config.run_files import ConfigError

MINIMAL = "campaign: c\nworkdir: run\nseeds:\n  - {bulk: Cu, repeat: [2, 2, 2], substitute: {Ni: 0.25}}\n"


def test_paths_are_relative_to_the_config_file(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text(MINIMAL)
    config = CampaignConfig.load(path)
    assert config.workdir == (tmp_path / "sub" / "run").resolve()
    assert config.store_url == str(config.workdir / "structures.db")


def test_a_campaign_keeps_the_settings_it_started_with_and_another_process_refuses_an_edited_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    load_campaign.cache_clear()
    started = load_campaign(str(path.resolve()), CampaignConfig.load(path).digest)
    assert started.file == str(path.resolve())
    assert load_campaign(started.file, started.digest) is started  # the subflows get the campaign's parse
    path.write_text(MINIMAL.replace("campaign: c", "campaign: d"))
    assert load_campaign(started.file, started.digest).campaign == "c"  # an edit waits for the next run
    load_campaign.cache_clear()  # what a Dask worker's process sees
    with pytest.raises(ConfigError, match="changed since the campaign started"):
        load_campaign(started.file, started.digest)


def test_a_label_run_reads_the_labelling_section_alone(tmp_path):
    """A DFT worker need not see the seed files, and an edit outside `labeling:` does not stop it."""
    (tmp_path / "seed.extxyz").write_text("")
    path = tmp_path / "c.yaml"
    labelling = "labeling: {calculator: {factory: emt}, timeout_s: 30, executor: slurm, slurm: {partition: p}}\n"
    path.write_text(MINIMAL + "  - {file: seed.extxyz}\n" + labelling)
    digest = CampaignConfig.load(path).labeling.digest()
    (tmp_path / "seed.extxyz").unlink()
    path.write_text("# edited\n" + MINIMAL + "  - {file: seed.extxyz}\nstop: {max_generations: 9}\n" + labelling)
    labeling = load_labeling(str(path), digest)
    assert labeling.timeout_s == 30 and labeling.slurm.partition == "p" and labeling.calculator.factory == "emt"
    path.write_text(MINIMAL + labelling.replace("30", "31"))
    with pytest.raises(ConfigError, match="labeling changed since the campaign started"):
        load_labeling(str(path), digest)
    assert load_labeling(str(path), None).timeout_s == 31  # no digest: the section as it is now
    path.write_text(MINIMAL + "labeling: {timeout_s: -1}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: labeling.timeout_s: Input should be greater than 0"):
        load_labeling(str(path), None)


@pytest.mark.parametrize("text, words", [
    (MINIMAL + "selection: {gamma_lowr: 2}\n", "selection.gamma_lowr: unknown key"),
    ("campaign: c\nworkdir: run\nseeds: []\n", "seeds: Value error, at least one seed"),
    ("campaign: c\nworkdir: run\nseeds:\n  - {bulk: Cu, file: x.xyz}\n", "exactly one of 'bulk'"),
    (MINIMAL + "labeling: {calculator: {factory: vasp}}\n", "unknown calculator 'vasp'"),
])
def test_config_errors_name_file_and_key(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        CampaignConfig.load(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_seeds_and_perturbed_copies_are_reproducible(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    config = CampaignConfig.load(path)
    [alloy] = build_seeds(config.seeds, seed=3)
    assert alloy.get_chemical_symbols().count("Ni") == 8 and len(alloy) == 32
    first = perturbed_copies([alloy], config.bootstrap, seed=3)
    again = perturbed_copies(build_seeds(config.seeds, seed=3), config.bootstrap, seed=3)
    assert len(first) == config.bootstrap.per_seed
    assert all((a.positions == b.positions).all() for a, b in zip(first, again))
    assert len({round(float(a.get_volume()), 6) for a in first}) == len(first)


def _record(generation, labels_total=10, known=0.5):
    return GenerationRecord(generation=generation, potential="p", potential_digest="d", training_structures=5,
                            labels_total=labels_total, labels_added=3, labels_failed=0,
                            held_out_energy_rmse_mev_per_atom=1.0, held_out_forces_rmse_mev_per_angstrom=50.0,
                            explored_frames=20, fraction_below_gamma_lower=known, selected=3)


def test_stop_criteria():
    stop = StopSettings(max_generations=3, label_budget=100, converged_fraction=0.9)
    assert stop_reason([], stop) is None
    assert stop_reason([_record(0)], stop) is None
    assert "max_generations" in stop_reason([_record(0), _record(1), _record(2)], stop)
    assert "budget" in stop_reason([_record(0, labels_total=120)], stop)
    assert "converged" in stop_reason([_record(0, known=0.95)], stop)


def test_a_species_without_gamma_is_never_called_converged():
    stop = StopSettings(max_generations=3, converged_fraction=0.9)
    waiting = _record(0, known=0.95).model_copy(update={"species_without_gamma": {"Ni": "6 environments"}})
    assert stop_reason([waiting], stop) is None
    assert waiting.table_row()["species_without_gamma"] == "Ni"
    assert _record(0).table_row()["species_without_gamma"] == "-"
    assert GenerationRecord.model_validate_json(_record(0).model_dump_json()).species_without_gamma == {}


def test_gamma_statistics():
    stats = gamma_statistics([0.5, 1.0, 3.0, 9.0], gamma_lower=1.2)
    assert stats == {"fraction_below_gamma_lower": 0.5, "max_gamma_median": 2.0, "max_gamma_max": 9.0}
