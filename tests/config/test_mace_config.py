"""MaceConfig: MACE's own option names, strict keys with the offending key named, a digest that
ignores runtime settings, dispatch by `backend`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlip_autopipec.config.mace import MaceConfig
from mlip_autopipec.config.run_files import ConfigError, load_yaml_model
from mlip_autopipec.config.train_run import TrainRunConfig
from mlip_autopipec.config.training import parse_training_config


def test_mace_is_a_backend_of_the_union_with_small_cpu_friendly_defaults():
    config = parse_training_config({"backend": "mace"})
    assert isinstance(config, MaceConfig)
    assert (config.num_channels, config.max_L, config.epochs) == (32, 1, 50)
    assert config.default_dtype == "float64" and config.swa is False and config.E0s == "average"
    assert config.committee_size == 1 and config.forces_weight == 100.0  # MACE's own default


@pytest.mark.parametrize("settings, message", [
    ({"epoch": 3}, "epoch"),  # a typo of epochs
    ({"max_num_epochs": 3}, "max_num_epochs"),  # our name is epochs
    ({"num_channels": 0}, "num_channels"),
    ({"device": "tpu"}, "device"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"E0s": {"Xx": -1.0}}, "E0s keys must be chemical symbols"),
    ({"E0s": "isolated"}, "E0s"),
    ({"hidden_irreps": "16x0e", "num_channels": 16}, "either hidden_irreps or num_channels"),
    ({"start_swa": 3}, "set swa: true"),
    ({"swa": True, "start_swa": 60, "epochs": 50}, "must be below epochs"),
    ({"extra_args": ["--train_file", "x.xyz"]}, "may not set"),
    ({"extra_args": ["--name=other"]}, "--name"),
    ({"valid_fraction": 1.0}, "valid_fraction"),
    ({"committee_size": 0}, "committee_size"),
])
def test_invalid_settings_name_the_key(settings, message):
    with pytest.raises(ValidationError, match=message):
        MaceConfig(**settings)


def test_unknown_key_in_a_yaml_file_names_file_and_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("training:\n  backend: mace\n  epochs: 2\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"train.yaml: training.learning_rate: unknown key"):
        load_yaml_model(path, TrainRunConfig)
    path.write_text("training:\n  backend: mace\n  epochs: 2\n  lr: 0.005\n")
    config = load_yaml_model(path, TrainRunConfig)
    assert isinstance(config.training, MaceConfig) and config.training.lr == 0.005
    assert config.export_formats == ["extxyz", "mace"]


def test_digest_ignores_runtime_settings_but_not_the_model():
    base = MaceConfig()
    assert base.digest() == MaceConfig(device="cpu", timeout_seconds=10, num_workers=4, plot=True).digest()
    assert base.digest() != MaceConfig(r_max=4.5).digest()
    assert base.digest() != MaceConfig(seed=1).digest()


def test_e0s_dict_becomes_maces_atomic_number_dict():
    assert MaceConfig(E0s={"Ni": -1.5, "Cu": -3.7}).e0s_argument() == "{28: -1.5, 29: -3.7}"
    assert MaceConfig(E0s="foundation").e0s_argument() == "foundation"
