"""Our metrics are pacemaker's numbers, converted to meV, not a recomputation that might drift."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from mlip_autopipec.backends.pacemaker.metrics import MetricsFormatError, read_metrics_table


@pytest.mark.slow
@pytest.mark.parametrize("split, table", [("train", "metrics.txt"), ("test", "test_metrics.txt")])
def test_final_metrics_equal_pacemakers_metrics_table(generation_1, split, table):
    written = pd.read_csv(generation_1.directory / table, sep=r"\s+")
    last = written.iloc[-1]
    metrics = generation_1.artifact.metrics
    assert metrics[f"{split}_energy_rmse_mev_per_atom"] == pytest.approx(1e3 * last["rmse_epa"], rel=1e-12)
    assert metrics[f"{split}_forces_rmse_mev_per_angstrom"] == pytest.approx(1e3 * last["rmse_f_comp"], rel=1e-12)
    assert metrics[f"{split}_forces_mae_mev_per_angstrom"] == pytest.approx(1e3 * last["mae_f_comp"], rel=1e-12)
    assert metrics[f"{split}_loss"] == pytest.approx(last["loss"], rel=1e-12)
    history = json.loads(generation_1.artifact.path("metrics_json").read_text())["history"][split]
    assert [row["iteration"] for row in history] == written["iter_num"].tolist()


@pytest.mark.slow
def test_energy_mae_matches_pacemakers_final_report(generation_1):
    # The energy MAE is not in metrics.txt; pacemaker prints it (2 decimals, meV/at) in the
    # "Cycle last iteration:" block of its log, which must agree with our value.
    log = (generation_1.directory / "log.txt").read_text()
    train_block = log.split("--Cycle last iteration:--")[1]
    printed = float(re.search(r"MAE:\s+([-0-9.]+)", train_block).group(1))
    assert generation_1.artifact.metrics["train_energy_mae_mev_per_atom"] == pytest.approx(printed, abs=0.006)


def test_metrics_table_with_a_short_row_names_file_and_line(tmp_path):
    table = tmp_path / "metrics.txt"
    table.write_text("ladder_step cycle_step iter_num loss\n0 0 0 1.5\n0 0 1\n")
    with pytest.raises(MetricsFormatError, match=r"metrics.txt line 3: 3 values for 4 columns"):
        read_metrics_table(table)


def test_metrics_table_reads_header_only_as_no_rows(tmp_path):
    table = tmp_path / "test_metrics.txt"
    table.write_text("ladder_step cycle_step iter_num loss\n")
    assert read_metrics_table(table) == []
