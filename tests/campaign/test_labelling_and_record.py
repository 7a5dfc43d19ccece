"""The campaign's labelling request, a dispatched run's counts and the generation record, as library calls."""

import json

import numpy as np

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.labelling import completed_ids, dispatched_counts, label_request
from mlip_autopipec.campaign.records import load_records, record_generation
from mlip_autopipec.campaign.results import ExplorationSummary, GenerationSteps, LabelCounts, QueueSummary
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tests.campaign.test_config_and_records import MINIMAL
from tests.labeling.conftest import fcc_cell


def _config(tmp_path, extra: str = "") -> CampaignConfig:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.replace("campaign: c", "campaign: My Campaign") + extra)
    return CampaignConfig.load(path)


def test_the_request_carries_the_campaign_labelling_settings(tmp_path):
    config = _config(tmp_path, "labeling: {timeout_s: 30, max_attempts: 2, workers: 3}\n")
    request = label_request(config, config.held_out_campaign, None, recover_running=True)
    assert request.calculator == {"factory": "emt", "kwargs": {}} and request.slurm is None
    assert request.flow_parameters() == {
        "store": config.store_url, "campaign": "My Campaign--held-out", "generation": None, "timeout_s": 30.0,
        "max_attempts": 2, "workers": 3, "workdir": str(config.workdir / "labeling" / "my-campaign-held-out"),
        "recover_running": True, "campaign_file": str((tmp_path / "c.yaml").resolve()),
        "labeling_digest": config.labeling.digest()}
    # The labeler's settings reach the label flow through the file: Prefect records a flow's parameters.
    slurm = _config(tmp_path, "labeling: {executor: slurm, calculator: {factory: emt, kwargs: {asap_cutoff: true}},"
                              " slurm: {partition: debug, environment: {LICENSE_TOKEN: s3cr3t}}}\n")
    request = label_request(slurm, slurm.campaign, 1)
    assert request.slurm["environment"] == {"LICENSE_TOKEN": "s3cr3t"} and request.calculator["kwargs"]
    assert not {"s3cr3t", "asap_cutoff"} & set(json.dumps(request.flow_parameters()).replace('"', " ").split())


def test_a_dispatched_request_with_storage_names_no_path_of_the_campaign(tmp_path):
    config = _config(tmp_path, "storage: s3://bucket/prefix\n")
    request = label_request(config, config.campaign, 2, dispatched=True)
    assert request.flow_parameters() == {
        "store": config.store_url, "campaign": "My Campaign", "generation": 2, "timeout_s": 600.0,
        "max_attempts": 3, "workers": 2, "recover_running": False, "labeling_digest": config.labeling.digest(),
        "storage": "s3://bucket/prefix", "campaign_digest": config.digest}
    # labelled in the campaign's own process, the request keeps its paths
    assert label_request(config, config.campaign, 2).flow_parameters()["campaign_file"] == config.file


def test_a_dispatched_run_is_counted_from_the_store(tmp_path):
    config = _config(tmp_path)
    request = label_request(config, config.campaign, 1)
    store = StructureStore(config.store_url, campaign=config.campaign)
    ids = [outcome.id for outcome in store.add(
        [NewStructure(LabelledFrame(fcc_cell("Cu", seed=seed), None, None), "md", status=Status.PENDING,
                      generation=1 if seed < 4 else 2) for seed in range(5)])]

    def label(row_id: int) -> None:
        atoms = store.get(row_id).frame.atoms
        store.complete(row_id, LabelledFrame(atoms, -1.0, np.zeros((len(atoms), 3))), "test", "digest")

    claimed = [row.id for row in store.claim(4, generation=1)]
    label(claimed[0])  # before the run
    before = completed_ids(request)
    label(claimed[1])
    label(claimed[2])
    store.fail(claimed[3], "boom")
    counts = dispatched_counts(request, before, "run-id")
    assert counts == LabelCounts(completed=2, failed=1, completed_ids=sorted(claimed[1:3]), flow_run_id="run-id")
    assert ids[4] not in counts.completed_ids  # another generation


def test_the_record_is_made_of_the_step_results_and_saved(generation_1, tmp_path):
    config = _config(tmp_path)
    store = StructureStore(config.store_url, campaign=config.campaign)
    store.add([NewStructure(LabelledFrame(fcc_cell("Cu", seed=seed), -1.0, np.zeros((8, 3))), "bootstrap")
               for seed in range(3)])
    steps = GenerationSteps(
        generation=4, potential=str(generation_1.directory / "artifact.json"),
        potential_digest=generation_1.artifact.digest, training_structures=20,
        held_out_metrics={"energy_rmse_mev_per_atom": 2.5, "forces_rmse_mev_per_angstrom": 80.0},
        test_metrics={"energy_rmse_mev_per_atom": 3.0, "forces_rmse_mev_per_angstrom": 90.0},
        explored=ExplorationSummary(trajectories=["a.extxyz"], walkers=1, frames=10, stopped_early=0,
                                    fraction_below_gamma_lower=0.3, max_gamma_median=1.5, max_gamma_max=4.0),
        queued=QueueSummary(candidates=5, selected=4, queued=3, skipped_exact=1, skipped_near=0),
        labels=LabelCounts(completed=2, failed=1), step_seconds={"train": 1.5})

    record = record_generation(config, steps)

    assert record.labels_total == 3  # completed rows of the campaign, read from the store now
    assert (record.labels_added, record.labels_failed, record.selected, record.explored_frames) == (2, 1, 4, 10)
    assert record.held_out_forces_rmse_mev_per_angstrom == 80.0 and record.test_forces_rmse_mev_per_angstrom == 90.0
    assert record.uncertainty_measure == "max_gamma" and record.max_gamma_max == 4.0
    assert record.species_without_gamma == generation_1.artifact.species_without_gamma
    assert record.rss_mb_after > 0 and record.step_seconds == {"train": 1.5}
    saved = config.workdir / "generations" / "gen-004" / "generation.json"
    assert json.loads(saved.read_text())["labels_total"] == 3
    assert load_records(config.workdir / "generations") == [record]

