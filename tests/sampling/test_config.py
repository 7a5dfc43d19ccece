import json

import pytest

from mlip_autopipec.config.run_files import ConfigError
from mlip_autopipec.sampling import load_rules, read_structure
from mlip_autopipec.sampling.config import BasinRegistry, MinDistValidator, NoisePlugin, QualityValidator
from tests.conftest import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "campaigns" / "sampling-rules.yaml"


def test_example_rules_file_uses_every_block():
    rules = load_rules(EXAMPLE)
    assert set(rules.enabled_actions()) == {"rigid_translate", "rigid_rotate", "push_pull", "dihedral_twist",
                                            "jitter", "md"}
    pipeline = rules.pipeline
    assert [type(p) for p in pipeline.action_plugins] == [NoisePlugin]
    assert [type(v) for v in pipeline.validators] == [MinDistValidator, QualityValidator]
    assert isinstance(pipeline.basin_registry, BasinRegistry)
    assert rules.quench.method == "fire"


@pytest.mark.parametrize("text, expected", [
    ("rigid_translate: {min_step: 0.1, max_stp: 0.5}", "rigid_translate.max_stp: unknown key"),
    ("rigid_rotate: {min_deg: 40, max_deg: 10}", "rigid_rotate: Value error, min_deg (40.0) is larger than max_deg"),
    ("jitter: {sigma: -1}", "jitter.sigma: Input should be greater than 0"),
    ("jitter: {}\npipeline: {validators: [{name: min_dst}]}", "pipeline.validators.0: Input tag 'min_dst'"),
    ("jitter: {}\npipeline: {validators: [{name: min_dist, hard_min: 0.5, factor: 1}]}",
     "pipeline.validators.0.min_dist.factor: unknown key"),
    ("jitter: {}\npipeline: {recorders: [basin_registry]}", "recorders must include step_trace"),
    ("jitter: {}\nquench: {method: newton}", "quench.method: Input should be 'none', 'fire'"),
    ("md: {enabled: false}", "no action enabled"),
    ("- jitter", "expected a mapping of settings"),
    ("jitter: [", "not valid YAML"),
])
def test_bad_rules_name_file_and_key(tmp_path, text, expected):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_structure_json_fields(tmp_path):
    path = tmp_path / "start.json"
    record = {"numbers": [29, 29, 8], "positions": [[0, 0, 0], [2.5, 0, 0], [1.2, 1.5, 0]],
              "cell": [[8, 0, 0], [0, 8, 0], [0, 0, 8]], "pbc": True, "fixed": [0], "tags": [0, 0, 2]}
    path.write_text(json.dumps(record))
    atoms = read_structure(path)
    assert atoms.get_chemical_formula() == "Cu2O"
    assert atoms.constraints[0].index.tolist() == [0] and atoms.get_tags().tolist() == [0, 0, 2]

    for field, value, message in [("positions", [[0, 0, 0], [1, 1]], "field 'positions'"),
                                  ("fixed", [5], "field 'fixed'"),
                                  ("tags", [0, 1], "field 'tags'"),
                                  ("numbers", [29, 29], "field 'numbers' has 2 entries for 3 positions")]:
        path.write_text(json.dumps({**record, field: value}))
        with pytest.raises(ValueError, match=message) as caught:
            read_structure(path)
        assert str(path) in str(caught.value)
