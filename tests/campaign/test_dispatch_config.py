"""The optional `dispatch:` section of campaign.yaml (the service path itself: tests/deployments)."""

from pathlib import Path

import pytest

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.config.run_files import ConfigError
from tests.campaign.test_config_and_records import MINIMAL

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path, CampaignConfig.load(path)


def test_without_dispatch_everything_runs_in_process(tmp_path):
    _, config = _load(tmp_path, MINIMAL)
    assert config.dispatch.labeling_deployment is None and config.dispatch.training_deployment is None


def test_labelling_and_training_dispatch(tmp_path):
    _, config = _load(tmp_path, MINIMAL + "dispatch: {labeling_deployment: label/dft, "
                                          "training_deployment: train-generation/gpu, timeout_s: 600}\n")
    assert config.dispatch.labeling_deployment == "label/dft" and config.dispatch.timeout_s == 600
    assert config.dispatch.training_deployment == "train-generation/gpu"


@pytest.mark.parametrize("text, words", [
    ("dispatch: {labelling_deployment: label/dft}\n", "dispatch.labelling_deployment: unknown key"),
    ("dispatch: {training_deployment: 3}\n", "dispatch.training_deployment"),
    ("dispatch: {timeout_s: 0}\n", "dispatch.timeout_s"),
])
def test_dispatch_errors(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + text)
    with pytest.raises(ConfigError) as caught:
        CampaignConfig.load(path)
    assert words in str(caught.value)


def test_storage_is_a_url_or_a_block_name_and_never_holds_credentials(tmp_path):
    assert _load(tmp_path, MINIMAL)[1].storage is None  # without it every path stays local, as before
    assert _load(tmp_path, MINIMAL + "storage: s3://bucket/campaigns\n")[1].storage == "s3://bucket/campaigns"
    assert _load(tmp_path, MINIMAL + "storage: minio-campaigns\n")[1].storage == "minio-campaigns"
    path = tmp_path / "c.yaml"
    for url in ("s3://AKIAKEY:s3cr3t@bucket/campaigns", "S3://AKIAKEY:s3cr3t@bucket/campaigns",
                "simplecache::s3://AKIAKEY:s3cr3t@bucket/x", "sftp://me@host/campaigns"):
        path.write_text(MINIMAL + f"storage: {url}\n")
        with pytest.raises(ConfigError) as caught:
            CampaignConfig.load(path)
        assert "storage: Value error, put no credentials in the storage URL" in str(caught.value)
        assert "s3cr3t" not in str(caught.value)
    assert _load(tmp_path, MINIMAL + "storage: simplecache::s3://bucket/a@b\n")[1].storage  # '@' in a key is fine


def test_slurm_labelling_dispatched_with_storage_is_refused(tmp_path):
    slurm = "labeling: {executor: slurm}\n"
    dispatched = "dispatch: {labeling_deployment: label/dft}\n"
    for text in (slurm + dispatched, slurm + "storage: s3://bucket/x\n"):  # each without the third is fine
        _load(tmp_path, MINIMAL + text)
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + slurm + dispatched + "storage: s3://bucket/x\n")
    with pytest.raises(ConfigError, match="SLURM jobs need a directory shared with the compute nodes"):
        CampaignConfig.load(path)


def test_the_service_example_campaign_loads():
    config = CampaignConfig.load(PROJECT_ROOT / "campaigns" / "cuni-service.yaml")
    assert config.dispatch.labeling_deployment == "label/dft"
    assert config.dispatch.training_deployment == "train-generation/gpu"
