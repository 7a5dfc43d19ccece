import pytest

from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.config.train_run import TrainRunConfig
from mlip_autopipec.config.training import PacemakerConfig


def test_defaults_without_a_file():
    settings = TrainRunConfig.load(None)
    assert isinstance(settings.training, PacemakerConfig)
    assert settings.export_formats == ["extxyz", "pacemaker"]


def test_backend_settings_survive_serialisation(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("campaign: cu\ntraining:\n  backend: pacemaker\n  cutoff: 6.5\n  maxiter: 7\n")
    settings = TrainRunConfig.load(path)
    dumped = settings.model_dump(mode="json")
    assert dumped["training"]["cutoff"] == 6.5 and dumped["training"]["maxiter"] == 7


@pytest.mark.parametrize("text, words", [
    ("training:\n  cutof: 5\n", "training.cutof: unknown key"),
    ("export:\n  test_fraction: 1.5\n", "export.test_fraction"),
    ("campaign: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        TrainRunConfig.load(path)
    assert str(path) in str(caught.value) and words in str(caught.value)
