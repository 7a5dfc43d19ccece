"""A real (tiny) campaign: EMT labels, real pacemaker, temporary Prefect server."""

import ase.io
import pytest
import yaml
from PIL import Image

from flows import active_learning as campaign_flow
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore

pytestmark = pytest.mark.slow

TINY_CAMPAIGN = {
    "campaign": "cu-tiny", "workdir": "run", "seed": 1,
    "seeds": [{"bulk": "Cu", "a": 3.61, "repeat": [1, 1, 2]}, {"bulk": "Cu", "a": 3.58, "repeat": [1, 1, 2],
                                                               "substitute": {"Ni": 0.5}}],
    "bootstrap": {"per_seed": 6, "rattle_stdev": 0.05, "max_strain": 0.02},
    "exploration": {"temperatures_K": [900], "walkers_per_temperature": 1, "steps": 60, "record_every": 6},
    "selection": {"gamma_lower": 1.05, "gamma_upper": 50.0, "max_per_generation": 5},
    "labeling": {"calculator": {"factory": "emt"}, "timeout_s": 120, "workers": 2},
    "validation": {"md_temperatures_K": [900], "md_steps": 60, "snapshots_per_run": 3},
    "training": {"backend": "pacemaker", "number_of_functions_per_element": 8, "nradmax_by_orders": [4, 2],
                 "lmax_by_orders": [0, 1], "maxiter": 20, "repulsion": None},
    "stop": {"max_generations": 2, "converged_fraction": None},
}


# Issue 22: three elements, one of them rare. One Au atom per 8-atom cell of the second seed: 4
# bootstrap cells give Au 4 environments for its 8 functions, so generation 0 has no γ for Au.
# Every test of this module reads (and the last ones resume) this one campaign: a campaign per
# test cost a minute and a half each on 2 cores.
RARE_SPECIES_CAMPAIGN = {
    **TINY_CAMPAIGN, "campaign": "cu-ni-au",
    "seeds": [{"bulk": "Cu", "a": 3.61, "repeat": [1, 1, 2], "substitute": {"Ni": 0.5}},
              {"bulk": "Cu", "a": 3.65, "repeat": [1, 1, 2], "substitute": {"Au": 0.125}}],
    "bootstrap": {"per_seed": 4, "rattle_stdev": 0.05, "max_strain": 0.02},
    "selection": {"method": "d_optimal", "gamma_lower": 1.05, "gamma_upper": 50.0, "max_per_generation": 6},
    "export_test_fraction": 0.0,
}


@pytest.fixture(scope="module")
def finished_campaign(tmp_path_factory):
    path = tmp_path_factory.mktemp("campaign") / "campaign.yaml"
    path.write_text(yaml.safe_dump(RARE_SPECIES_CAMPAIGN))
    return path, campaign_flow.active_learning(str(path))


def test_generations_train_explore_select_and_label(finished_campaign):
    path, records = finished_campaign
    config = CampaignConfig.load(path)
    assert [r["generation"] for r in records] == [0, 1]
    store = StructureStore(config.store_url, campaign=config.campaign)
    labelled = store.harvest()
    assert records[0]["training_structures"] + 0 < len(labelled)  # generation 0 added labels for generation 1
    assert {row.source for row in labelled} == {"bootstrap", "md"}
    assert all(row.provenance["labeler"] == "EMT" for row in labelled)
    assert records[1]["training_structures"] > records[0]["training_structures"]
    for record in records:
        # 2 seeds x 1 temperature x 1 walker x 60 steps / 6 per frame
        assert record["explored_frames"] == 20 and 0 < record["held_out_forces_rmse_mev_per_angstrom"] < 1e4
    # Selected frames come from exploration with this generation's potential, recorded with gamma.
    explored = ase.io.read(config.workdir / "generations" / "gen-000" / "explore" / "walker-000.extxyz", ":")
    assert all("max_gamma" in frame.info for frame in explored)
    # The held-out set is its own campaign: never exported for training.
    assert StructureStore(config.store_url, campaign=config.held_out_campaign).status_counts()["completed"] == 6
    # Every queued structure went through the outbox: its submit queue holds exactly the md rows.
    submitted = (config.workdir / "outbox" / "dft_submit.jsonl").read_text().splitlines()
    md_rows = [row for row in store.select() if row.source == "md"]
    assert 0 < len(submitted) == len(md_rows) <= sum(r["selected"] for r in records)
    # Each generation's most uncertain walker is rendered into its report.
    for generation in ("gen-000", "gen-001"):
        rendered = config.workdir / "generations" / generation / "report" / "most-uncertain"
        with Image.open(sorted(rendered.glob("frame-*.png"))[0]) as picture:
            assert len(set(picture.convert("RGB").getdata())) > 50
    # The learning curve covers both generations.
    with Image.open(config.workdir / "report" / "learning-curve.png") as curve:
        assert curve.size[0] > 300 and len(set(curve.convert("L").getdata())) > 10


def test_a_rare_species_gets_labelled_and_its_gamma_appears_in_generation_1(finished_campaign):
    from mlip_autopipec.backends import PotentialArtifact

    path, records = finished_campaign
    config = CampaignConfig.load(path)
    assert [r["generation"] for r in records] == [0, 1]
    assert set(records[0]["species_without_gamma"]) == {"Au"}
    assert "4 training environments for 8 B-functions" in records[0]["species_without_gamma"]["Au"]
    assert records[1]["species_without_gamma"] == {}
    first = PotentialArtifact.load(config.workdir / "generations" / "gen-000")
    assert set(first.species_without_gamma) == {"Au"}
    # What generation 0 selected for labelling: cells with Au first (its atoms count as uncertain).
    md_rows = [row for row in StructureStore(config.store_url, campaign=config.campaign).select()
               if row.source == "md" and row.generation == 1]
    assert md_rows and all("Au" in row.frame.atoms.get_chemical_symbols() for row in md_rows)
    second = PotentialArtifact.load(config.workdir / "generations" / "gen-001")
    assert second.species_without_gamma == {} and "active_set_summary" not in second.files


def test_a_finished_campaign_does_nothing(finished_campaign):
    path, records = finished_campaign
    config = CampaignConfig.load(path)
    before = StructureStore(config.store_url, campaign=config.campaign).status_counts()
    assert campaign_flow.active_learning(str(path)) == records
    assert StructureStore(config.store_url, campaign=config.campaign).status_counts() == before


def test_resume_after_a_kill_labels_nothing_twice(finished_campaign):
    path, records = finished_campaign
    config = CampaignConfig.load(path)
    store = StructureStore(config.store_url, campaign=config.campaign)
    # As if killed while generation 1 was labelling: no record yet, and one queued structure was
    # claimed by a labeller that died (left running, unlabelled).
    (config.workdir / "generations" / "gen-001" / "generation.json").unlink()
    last_batch = [row for row in store.harvest() if row.generation == 2]
    assert last_batch, "generation 1 queued structures for generation 2"
    orphan = last_batch[0].frame.atoms.copy()
    orphan.positions[0, 0] += 0.05
    [added] = store.add([NewStructure(LabelledFrame(orphan, None, None), "md", status=Status.PENDING, generation=2)])
    assert [row.id for row in store.claim(1, generation=2)] == [added.id]
    labelled_before = {row.id: (row.frame.energy, row.provenance["attempts"]) for row in store.harvest()}
    explored = sorted((config.workdir / "generations" / "gen-001" / "explore").glob("walker-*.extxyz"))
    explored_before = [path.stat().st_mtime_ns for path in explored]

    resumed = campaign_flow.active_learning(str(path))
    assert [r["generation"] for r in resumed] == [0, 1]
    assert resumed[1]["potential_digest"] == records[1]["potential_digest"]  # training was not redone
    # The unchanged generation's exploration came from Prefect's cache (content digests): not run again.
    assert explored and [path.stat().st_mtime_ns for path in explored] == explored_before
    after = {row.id: (row.frame.energy, row.provenance["attempts"]) for row in store.harvest()}
    assert after.pop(added.id)[0] is not None  # the orphan got its label
    assert after == labelled_before  # every other label untouched: nothing labelled twice
