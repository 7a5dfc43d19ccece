"""The validate flow on a real (tiny) Pacemaker potential and held-out Cu DFT frames."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import pytest

from flows import validate as validate_flow
from tests.conftest import PROJECT_ROOT
from tests.validation.test_report import assert_real_png


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


@pytest.fixture(scope="module")
def validated(generation_1, cu_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("validation") / "report"
    test_frames = str(cu_manifest.path_of("extxyz", "test"))
    result = validate_flow.validate(str(generation_1.directory), [test_frames], str(out),
                                    reference="emt", structure="Cu", crystal="fcc", lattice=3.61,
                                    key="cu-test gen 1")
    return out, result


@pytest.mark.slow
def test_flow_writes_finite_metrics_real_plots_and_report(validated):
    out, result = validated
    metrics = json.loads((out / "validation_metrics.json").read_text())
    test = metrics["test_set"]
    assert metrics["frames"] == 6 and test["frames"] == 6.0
    for key in ("energy_rmse_mev_per_atom", "energy_mae_mev_per_atom", "forces_rmse_mev_per_angstrom",
                "forces_mae_mev_per_angstrom", "max_gamma"):
        assert math.isfinite(test[key]) and test[key] >= 0, key
    assert metrics["stress"] is None  # Cu-I has no stress labels
    assert set(metrics["per_element"]) == {"Cu"}
    assert metrics["per_element"]["Cu"]["forces_rmse_mev_per_angstrom"] == pytest.approx(
        test["forces_rmse_mev_per_angstrom"])
    physical = metrics["physical"]
    assert physical["reference_name"] == "emt"
    assert set(physical["relative_errors"]) >= {"bulk_modulus_gpa", "v0_per_atom", "c11_gpa", "c12_gpa", "c44_gpa"}
    assert _finite(physical["potential"]["scalars"]) and _finite(physical["relative_errors"])
    assert physical["reference"]["born_stable"] is True  # EMT copper
    assert isinstance(physical["potential"]["born_stable"], bool)
    assert _finite(metrics["test_set"]) and _finite(metrics["worst_frames"])
    assert set(metrics["plots"]) == {"parity", "errors", "gamma", "eos"}
    report = (out / "report.md").read_text()
    for name, filename in metrics["plots"].items():
        assert_real_png(out / filename)
        assert f"![{name}]({filename})" in report
    assert result.report_file == str((out / "report.md").resolve())
    assert result.test_set == test and result.frames == 6
    print(json.dumps({"test_set": test, "physical": physical["potential"]["scalars"],
                      "relative_errors": physical["relative_errors"]}, indent=1))


@pytest.mark.slow
def test_artifacts_are_published(validated):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest(key):
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1]

    report = asyncio.run(latest("cu-test-gen-1-validation-report"))
    assert "Physical checks" in report.data and "eos.png" in report.data
    table = asyncio.run(latest("cu-test-gen-1-validation-metrics"))
    assert table.type == "table" and "c44_gpa" in json.dumps(table.data)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flows.validate", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_help_and_missing_files(tmp_path):
    done = _cli("--help")
    assert done.returncode == 0 and "--potential" in done.stdout and "--reference" in done.stdout
    data = tmp_path / "data.extxyz"
    data.write_text("")
    done = _cli("--potential", str(tmp_path / "no-generation"), "--data", str(data), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "no-generation" in done.stderr
    done = _cli("--potential", str(tmp_path), "--data", str(tmp_path / "missing.extxyz"), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "missing.extxyz" in done.stderr
