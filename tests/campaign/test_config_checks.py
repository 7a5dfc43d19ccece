"""Config errors before anything starts (issue 14.3): files, elements, the labeler's import and
training keys are checked when campaign.yaml is loaded; every problem is named by its key."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.config.run_files import ConfigError
from tests.conftest import PROJECT_ROOT

GOOD = {"campaign": "t", "workdir": "run", "seeds": [{"bulk": "Cu", "a": 3.61}],
        "labeling": {"calculator": {"factory": "emt"}}}


def _write(tmp_path, **changes):
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **changes}))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"seeds": [{"file": "missing.extxyz"}]}, "seeds.0.file: no such file {dir}/missing.extxyz"),
    ({"seeds": [{"bulk": "Cu"}, {"bulk": "Qq"}]}, "seeds.1.bulk: unknown element 'Qq'"),
    ({"seeds": [{"bulk": "Cu", "substitute": {"Nn": 0.5}}]}, "seeds.0.substitute.Nn: unknown element 'Nn'"),
    ({"seeds": [{"bulk": "Fe"}]}, "labeling.calculator: EMT has no parameters for Fe (it knows "),
    ({"labeling": {"calculator": {"factory": "my_labelers:Dft"}}},
     "labeling.calculator.factory: calculator 'my_labelers:Dft': cannot import my_labelers:Dft (No module "
     "named 'my_labelers')"),
    ({"labeling": {"calculator": {"factory": "ase.calculators.emt:EMTT"}}},
     "labeling.calculator.factory: calculator 'ase.calculators.emt:EMTT': cannot import"),
    ({"bootstrap": {"pool": ["pool.xyz"]}}, "bootstrap.pool.0: no such file {dir}/pool.xyz"),
    ({"validation": {"data": "held.extxyz"}}, "validation.data: no such file {dir}/held.extxyz"),
    ({"training": {"backend": "pacemaker", "maxiterr": 3}}, "training.maxiterr: unknown key"),
])
def test_each_problem_names_the_file_and_the_key(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        CampaignConfig.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message.format(dir=tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_good_file_loads_and_all_problems_are_listed_at_once(tmp_path):
    assert CampaignConfig.load(_write(tmp_path)).campaign == "t"
    path = _write(tmp_path, seeds=[{"file": "a.xyz"}, {"bulk": "Qq"}])
    with pytest.raises(ConfigError, match=r"seeds.0.file: no such file .*; seeds.1.bulk: unknown element"):
        CampaignConfig.load(path)


def _campaign(config, tmp_path, *extra):
    prefect_home = tmp_path / "prefect-home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(prefect_home)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flows.active_learning", "--config", str(config), *extra],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
    return result, time.monotonic() - started, prefect_home


def test_the_campaign_command_fails_in_one_line_and_creates_nothing(tmp_path):
    config = _write(tmp_path, seeds=[{"file": "missing.extxyz"}],
                    labeling={"calculator": {"factory": "my_labelers:Dft"}})
    result, seconds, prefect_home = _campaign(config, tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {config}: seeds.0.file: no such file {tmp_path}/missing.extxyz; labeling.calculator.factory: "
        "calculator 'my_labelers:Dft': cannot import my_labelers:Dft (No module named 'my_labelers')"]
    assert result.stdout == ""
    assert not (tmp_path / "run").exists()  # no workdir, no store
    assert not (prefect_home / "prefect.db").exists()  # no Prefect server was started
    print(f"config error reported in {seconds:.1f} s")

    debug, _, _ = _campaign(config, tmp_path, "--debug")
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
