"""The campaign's side of training through storage: a generation its name already holds is fetched,
not trained again (the whole path, with workers: tests/deployments/test_storage_campaign.py)."""

import pytest
from prefect import flow
from prefect.exceptions import ObjectNotFound

from flows import active_learning as campaign_flow
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.travel import dataset_name, generation_name
from mlip_autopipec.files import sha256_file
from mlip_autopipec.storage import ObjectStore
from tasks.store import ExportedDataset
from tests.campaign.test_config_and_records import MINIMAL
from tests.campaign.test_travel import _generation


@flow
def _train(config: str, digest: str, dataset: ExportedDataset):
    settings = CampaignConfig.load(config)
    assert settings.digest == digest
    return campaign_flow.train_generation(settings, dataset, 0, None, None)


def test_a_generation_storage_already_holds_is_fetched_not_trained(tmp_path):
    objects = ObjectStore((tmp_path / "storage").as_uri())
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + f"storage: {objects.url}\n"
                              "dispatch: {training_deployment: train-generation/nowhere}\n")
    config = CampaignConfig.load(path)
    elsewhere = _generation(tmp_path / "gpu" / "gen-000", "potential 0")
    elsewhere.config_digest = config.training.digest()
    elsewhere.save()
    objects.set_name(generation_name("c", 0), objects.put_tree(elsewhere.generation_dir).digest)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "manifest.json").write_text("{}")
    dataset = ExportedDataset(manifest=str(tmp_path / "dataset" / "manifest.json"), digest="d" * 64,
                              counts={"train": 1, "test": 0}, elements=["Cu"])

    trained = _train(str(path), config.digest, dataset)  # train-generation/nowhere is never asked

    local = config.workdir / "generations" / "gen-000"
    assert trained.generation_dir == str(local) and trained.digest == elsewhere.digest
    assert sha256_file(local / "potential.yaml") == sha256_file(elsewhere.generation_dir / "potential.yaml")
    # Another dataset: the dataset is uploaded and the training deployment asked (here: there is none).
    other = dataset.model_copy(update={"digest": "e" * 64})
    with pytest.raises(ObjectNotFound):
        _train(str(path), config.digest, other)
    assert objects.name(dataset_name("c", 0)) is not None
