"""Training config: clear errors for wrong input, digests that follow what changes the potential."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlip_autopipec.config.training import PacemakerConfig, parse_training_config


def test_defaults_are_valid_and_small():
    config = PacemakerConfig()
    assert config.backend == "pacemaker"
    assert config.number_of_functions_per_element <= 50 and config.maxiter <= 200
    assert config.repulsion == "auto" and config.elements is None and config.baseline is None


@pytest.mark.parametrize("data, key", [
    ({"max_iter": 10}, "max_iter"),
    ({"loss": {"kapa": 0.5}}, "loss.kapa"),
    ({"embedding": {"ndensity": 1, "fs_parameters": [1, 1], "npots": "FinnisSinclair"}}, "embedding.npots"),
    ({"baseline": {"factory": "emt", "kwarg": {}}}, "baseline.kwarg"),
])
def test_unknown_keys_are_errors_naming_the_key(data, key):
    with pytest.raises(ValidationError) as failure:
        parse_training_config({"backend": "pacemaker", **data})
    error = failure.value.errors()[0]
    assert error["type"] == "extra_forbidden"
    assert ".".join(str(part) for part in error["loc"]) == key


@pytest.mark.parametrize("data, message", [
    ({"nradmax_by_orders": [8, 3], "lmax_by_orders": [0, 2, 1]}, "same length"),
    ({"nradmax_by_orders": [8, 3], "lmax_by_orders": [1, 2]}, "must start with 0"),
    ({"embedding": {"ndensity": 2, "fs_parameters": [1, 1]}}, "2 numbers per density"),
    ({"loss": {"kappa": 1.5}}, "kappa must be in"),
    ({"ladder_step": 1.5}, "ladder_step entries"),
    ({"ladder_step": [10, 0.1, 0.2]}, "at most two"),
    ({"elements": ["Cu", "Xx"]}, "unknown chemical symbol"),
    ({"reference_energy": {"Copper": -1.0}}, "chemical symbols"),
    ({"optimizer": "Adam"}, "BFGS"),
    ({"baseline": {"factory": "no_such_calculator"}}, "unknown calculator"),
])
def test_invalid_values_are_explained(data, message):
    with pytest.raises(ValidationError, match=message):
        PacemakerConfig(**data)


def test_elements_are_sorted_and_unique():
    assert PacemakerConfig(elements=["Ni", "Cu", "Ni"]).elements == ["Cu", "Ni"]


def test_reference_energy_takes_a_number_a_dict_or_auto():
    assert PacemakerConfig(reference_energy=-1.5).reference_energy == -1.5
    assert PacemakerConfig(reference_energy={"Cu": -0.2}).reference_energy == {"Cu": -0.2}
    assert PacemakerConfig(reference_energy="auto").reference_energy == "auto"
    with pytest.raises(ValidationError):
        PacemakerConfig(reference_energy="VASP")


def test_digest_follows_the_potential_not_the_runtime_limits():
    base = PacemakerConfig()
    assert PacemakerConfig(timeout_seconds=10, display_step=1).digest() == base.digest()
    assert PacemakerConfig(maxiter=base.maxiter + 1).digest() != base.digest()
    assert PacemakerConfig(baseline={"factory": "emt"}).digest() != base.digest()


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown training backend 'nequip'.*pacemaker"):
        parse_training_config({"backend": "nequip"})


def test_backend_defaults_to_pacemaker():
    assert isinstance(parse_training_config({"maxiter": 5}), PacemakerConfig)
