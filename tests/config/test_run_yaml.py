"""The unified run.yaml schema: a table of invalid files and the message each gives, the mapping of
train knobs onto the backend's config, sampling and indices."""

from __future__ import annotations

import json

import pytest
import yaml

from mlip_autopipec.config.mace import MaceConfig
from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.config.run_yaml import RunSpec, is_run_spec, load_run_spec


@pytest.fixture
def inputs(tmp_path):
    """Input files a run.yaml can point at (contents do not matter to the schema)."""
    for name in ("train.extxyz", "test.extxyz", "model.model", "ckpt_run-1_epoch-3.pt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "model.json").write_text(json.dumps({"num_channels": 8, "max_L": 0, "r_max": 4.0}))
    (tmp_path / "idx.json").write_text("[2, 0]")
    return tmp_path


def _write(directory, content: dict):
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def _mace_train(inputs, **extra):
    return {"backend": "mace", "task": "train", "run_dir": str(inputs / "runs" / "r1"),
            "data": {"train": str(inputs / "train.extxyz")},
            "train": {"input_json": str(inputs / "model.json"), "epochs": 2}, **extra}


INVALID = [
    # (change to a valid MACE train run.yaml, expected message)
    ({"task": "fit"}, r"task: Input should be 'train', 'finetune', 'resume', 'evaluate', 'infer' or 'export'"),
    ({"backend": "nequip"}, r"backend: Input should be 'pacemaker', 'mace', 'equiformer_v2' or 'gemnet_oc'"),
    ({"run_dir": None}, r"run_dir: Input is not a valid path"),
    ({"device": "gpu"}, r"device: Input should be 'cuda' or 'cpu'"),
    ({"learning_rate": 0.1}, r"learning_rate: unknown key"),
    ({"train": {"input_json": "model.json", "epoch": 2}}, r"train.epoch: unknown key"),
    ({"train": {"input_json": "model.json", "epochs": "many"}}, r"train.epochs: Input should be a valid integer"),
    ({"train": {"input_json": "model.json", "progress_bar": "sometimes"}}, r"train.progress_bar"),
    ({"data": {"train": "train.extxyz", "shards": 4}}, r"data.shards: unknown key"),
    ({"data": {"train": "train.extxyz", "train_indices": {"max_samples": 0}}},
     r"data.train_indices.max_samples: Input should be greater than or equal to 1"),
    ({"data": {"train": "train.extxyz", "indices": [1, -2]}}, r"data.indices: Value error, indices must be >= 0"),
    ({"eval": {"energy_only": "maybe"}}, r"eval.energy_only: Input should be a valid boolean"),
    ({"backend_env": ["A=1"]}, r"backend_env: Input should be a valid dictionary"),
    ({"train": {"epochs": 2}}, r"train.input_json: required for backend 'mace' task 'train'"),
    ({"data": {}}, r"data.train: required for task 'train'"),
    ({"task": "finetune"}, r"model_in: required for task 'finetune' \(or model.manifest\)"),
    ({"task": "resume"}, r"model_in: required for task 'resume'"),
    ({"task": "export"}, r"model_in: required for task 'export'"),
    ({"task": "evaluate", "model_in": "model.model", "data": {}}, r"data: task 'evaluate' needs data.test"),
    ({"task": "infer"}, r"model_in: required for task 'infer'"),
    ({"task": "evaluate", "model_in": "model.model", "model": {"weights": "w.pt"}, "data": {"test": "t.xyz"}},
     r"model.weights: needs model.manifest"),
    ({"train": {"input_json": "model.json", "cycle_steps": 10}}, r"train.cycle_steps: unknown key"),
    ({"backend": "gemnet_oc"}, r"train.config_yml: required for backend 'gemnet_oc'"),
    ({"backend": "pacemaker", "train": {"lr": 0.1}}, r"train.lr: not supported by the pacemaker backend"),
]


@pytest.mark.parametrize("change, message", INVALID, ids=[case[1][:40] for case in INVALID])
def test_invalid_run_yaml_gives_the_expected_message(inputs, change, message):
    content = {**_mace_train(inputs), **change}
    path = _write(inputs, content)
    with pytest.raises(ConfigError, match=message) as failure:
        load_run_spec(path, check_paths=False)
    assert str(failure.value).startswith(f"{path}: ")


def test_missing_input_files_are_named_with_their_key(inputs):
    content = _mace_train(inputs)
    content["data"]["test"] = str(inputs / "nope.extxyz")
    with pytest.raises(ConfigError, match=r"run.yaml: data.test: .*nope.extxyz does not exist"):
        load_run_spec(_write(inputs, content))
    with pytest.raises(ConfigError, match="no such run file"):
        load_run_spec(inputs / "missing.yaml")
    (inputs / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_run_spec(inputs / "list.yaml")


def test_a_valid_mace_train_file_maps_knobs_onto_mace_config(inputs):
    content = _mace_train(inputs, device="cpu", backend_args=["--ema"], backend_env={"OMP_NUM_THREADS": 2})
    content["train"].update({"lr": 0.005, "force_weight": 10.0, "save_every": 2, "head_key": "omat_pbe",
                             "max_grad_norm": 5.0, "progress_bar": False})
    spec = load_run_spec(_write(inputs, content))
    assert is_run_spec(content) and not is_run_spec({"training": {}})
    assert spec.backend_env == {"OMP_NUM_THREADS": "2"}
    config = spec.training_config()
    assert isinstance(config, MaceConfig)
    assert (config.num_channels, config.max_L, config.r_max) == (8, 0, 4.0)  # from train.input_json
    assert (config.epochs, config.lr, config.forces_weight, config.eval_interval) == (2, 0.005, 10.0, 2)
    assert config.foundation_head == "omat_pbe" and config.max_grad_norm == 5.0
    assert config.device == "cpu" and config.extra_args == ["--ema"]


def test_unknown_key_in_input_json_names_the_file(inputs):
    (inputs / "model.json").write_text(json.dumps({"num_channel": 8}))
    spec = load_run_spec(_write(inputs, _mace_train(inputs)))
    with pytest.raises(ConfigError, match=r"model.json \(with the train knobs\): num_channel: unknown key"):
        spec.training_config()
    (inputs / "model.json").write_text(json.dumps({"backend": "pacemaker"}))
    with pytest.raises(ConfigError, match="does not match run.yaml's backend 'mace'"):
        spec.training_config()


def test_indices_apply_to_the_active_split(inputs):
    content = {"backend": "mace", "task": "evaluate", "run_dir": "r", "model_in": str(inputs / "model.model"),
               "data": {"train": str(inputs / "train.extxyz"), "test": str(inputs / "test.extxyz"),
                        "indices_path": str(inputs / "idx.json"),
                        "train_indices": {"indices_path": str(inputs / "idx.json")}}}
    spec = load_run_spec(_write(inputs, content))
    assert spec.active_split == "test"
    assert spec.indices_for("test") == [2, 0]
    assert spec.indices_for("train") == [2, 0]  # its own indices_path
    content["data"]["indices"] = [1]
    assert load_run_spec(_write(inputs, content)).indices_for("test") == [1]  # indices win over indices_path
    (inputs / "idx.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="data.indices_path: .* must hold a JSON list"):
        RunSpec.model_validate({**content, "data": {**content["data"], "indices": None}}).indices_for("test")


def test_cuda_falls_back_to_cpu_with_a_warning(inputs, monkeypatch):
    import mlip_autopipec.backends.runner as command

    monkeypatch.setattr(command, "_cuda_available", lambda: False)
    spec = load_run_spec(_write(inputs, _mace_train(inputs)))
    assert spec.device == "cuda"  # the seed's default
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        assert spec.resolved_device() == "cpu"
