"""The FairChem config we write, the user's config we read, and their errors: no FairChem needed."""

from __future__ import annotations

import pytest
import yaml

from mlip_autopipec.backends.fairchem.config import FairChemConfig
from mlip_autopipec.backends.fairchem.native_config import (
    build_native_config,
    check_trainable,
    load_native_config,
    with_datasets,
    write_native_config,
)
from mlip_autopipec.config.run_files import ConfigError


def test_equiformer_v2_model_is_sized_from_our_config(tmp_path):
    config = FairChemConfig(backend="equiformer_v2", num_layers=3, channels=24, lmax=3, cutoff=4.5,
                            max_neighbors=12, epochs=7, batch_size=2, lr=1e-3, model_overrides={"num_heads": 3})
    native = build_native_config(config, {"train": tmp_path / "train.aselmdb", "val": tmp_path / "val.aselmdb"})
    backbone = native["model"]["backbone"]
    assert backbone["model"] == "equiformer_v2_backbone"
    assert (backbone["num_layers"], backbone["sphere_channels"], backbone["lmax_list"]) == (3, 24, [3])
    assert (backbone["max_radius"], backbone["max_neighbors"]) == (4.5, 12)
    assert backbone["num_heads"] == 3  # model_overrides win over the sizes we derive
    assert set(native["model"]["heads"]) == {"energy", "forces"}
    assert (native["optim"]["max_epochs"], native["optim"]["batch_size"], native["optim"]["lr_initial"]) == (7, 2, 1e-3)
    assert native["dataset"]["train"]["src"] == str((tmp_path / "train.aselmdb").resolve())
    assert native["dataset"]["train"]["format"] == "ase_db"
    assert "transforms" in native["dataset"]["train"] and "transforms" not in native["dataset"]["val"]
    # What fairchem reads back is exactly what we built.
    assert yaml.safe_load(write_native_config(native, tmp_path / "cfg.yml").read_text()) == native


def test_gemnet_oc_model_is_sized_from_our_config(tmp_path):
    config = FairChemConfig(backend="gemnet_oc", num_layers=1, channels=32, cutoff=6.0, max_neighbors=30)
    backbone = build_native_config(config, {"train": tmp_path / "t.aselmdb"})["model"]["backbone"]
    assert backbone["model"] == "gemnet_oc_backbone"
    assert (backbone["num_blocks"], backbone["emb_size_atom"], backbone["emb_size_edge"]) == (1, 32, 64)
    assert backbone["cutoff"] == backbone["cutoff_qint"] == 6.0
    assert backbone["max_neighbors_qint"] == 8  # capped: quadruplets grow as the cube of the neighbours
    assert 0 in backbone["qint_tags"]  # bulk and molecules are tagged 0


def test_fairchem_config_schema_errors_name_the_field():
    with pytest.raises(ValueError, match="cutof"):
        FairChemConfig(backend="equiformer_v2", cutof=5.0)
    with pytest.raises(ValueError, match="backend"):
        FairChemConfig(backend="schnet")
    with pytest.raises(ValueError, match="epochs"):
        FairChemConfig(backend="gemnet_oc", epochs=0)
    with pytest.raises(ValueError, match="baseline: delta learning is not supported"):
        FairChemConfig(backend="gemnet_oc", baseline={"factory": "emt"})


def test_training_configs_know_the_fairchem_backends():
    from mlip_autopipec.config.training import parse_training_config

    config = parse_training_config({"backend": "gemnet_oc", "epochs": 3})
    assert isinstance(config, FairChemConfig) and config.epochs == 3
    # Runtime-only knobs do not change what the potential is.
    assert config.digest() == config.model_copy(update={"device": "cpu", "timeout_seconds": 5}).digest()
    assert config.digest() != config.model_copy(update={"channels": 8}).digest()


def test_get_trainer_finds_both_fairchem_backends():
    from mlip_autopipec.backends import get_trainer

    assert get_trainer("equiformer_v2").name == "equiformer_v2"
    assert get_trainer("gemnet_oc", python="/nowhere/python").python == "/nowhere/python"


def test_user_config_keeps_its_settings_and_gets_our_datasets(tmp_path):
    user = {"model": {"name": "hydra"}, "optim": {"max_epochs": 3},
            "dataset": {"train": {"src": "/elsewhere/oc20", "format": "lmdb", "a2g_args": {"r_energy": False},
                                  "transforms": {"normalizer": {"file": "n.pt"}}},
                        "test": {"src": "/elsewhere/test"}}}
    native = with_datasets(user, {"train": tmp_path / "train.aselmdb"}, transforms={"ours": {}})
    train = native["dataset"]["train"]
    assert train["src"] == str((tmp_path / "train.aselmdb").resolve()) and train["format"] == "ase_db"
    assert train["a2g_args"] == {"r_energy": False}  # the user's settings of the split are kept
    assert train["transforms"] == {"normalizer": {"file": "n.pt"}}  # ours only where there are none
    assert native["dataset"]["test"] == {"src": "/elsewhere/test"}  # a split we were not given stays
    assert user["dataset"]["train"]["src"] == "/elsewhere/oc20"  # the input is not modified


def test_a_dataset_list_is_refused_with_the_source_named():
    with pytest.raises(ConfigError, match="my.yml: dataset: expected a mapping"):
        with_datasets({"model": {"name": "hydra"}, "dataset": [{"src": "a"}]}, {"train": "t.aselmdb"},
                      source="my.yml")


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a mapping of settings at the top level"),
    ("optim: {max_epochs: 2}\n", "model: required"),
    ("model: {backbone: {}}\n", "model.name: required"),
    ("model: {name: hydra}\noptim: 3\n", "optim: expected a mapping"),
    ("model: {name: hydra}\nincludes: base.yml\n", "includes: expected a list"),
    ("model: [name\n", "not valid YAML"),
])
def test_bad_user_configs_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "cfg.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_native_config(path)
    assert str(path) in str(error.value)


def test_includes_are_made_absolute(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "cfg.yml"
    path.write_text("includes: [../base.yml]\nmodel: {name: hydra}\n")
    assert load_native_config(path)["includes"] == [str((tmp_path / "base.yml").resolve())]


def test_a_config_without_training_set_or_epochs_is_not_trainable():
    with pytest.raises(ConfigError, match="cfg.yml: dataset.train.src: missing"):
        check_trainable({"model": {"name": "hydra"}, "optim": {"max_epochs": 1}}, "cfg.yml")
    with pytest.raises(ConfigError, match="optim.max_epochs: required"):
        check_trainable({"dataset": {"train": {"src": "t"}}, "optim": {}}, "cfg.yml")


def test_run_yaml_for_fairchem_needs_its_native_config(tmp_path):
    from mlip_autopipec.config.run_yaml import load_run_spec

    path = tmp_path / "run.yaml"
    path.write_text("backend: equiformer_v2\ntask: train\nrun_dir: out\n")
    with pytest.raises(ConfigError, match="train.config_yml: required for backend 'equiformer_v2'"):
        load_run_spec(path, check_paths=False)
