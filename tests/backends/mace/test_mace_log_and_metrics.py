"""Parsing what mace_run_train prints and writes: epoch lines, restarts, error tables, results file;
the command line built from a config; committee deviations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlip_autopipec.backends.mace.calculator import committee_deviations
from mlip_autopipec.backends.mace.command import RunFiles, train_arguments
from mlip_autopipec.backends.runner import resolve_device
from mlip_autopipec.backends.mace.log_watch import MaceLogWatcher
from mlip_autopipec.backends.mace.metrics import (
    MetricsFormatError,
    collect_metrics,
    parse_error_tables,
    read_results,
)
from mlip_autopipec.config.mace import MaceConfig

# Verbatim from a mace-torch 0.3.16 run (restart from epoch 3, two validation heads).
LOG = """\
2026-11-22 04:48:33.689 INFO: MACE version: 0.3.16
2026-11-22 04:48:34.100 INFO: Loading checkpoint: ./checkpoints/mace_run-1_epoch-3.pt
2026-11-22 04:48:34.998 INFO: ===========TRAINING===========
2026-11-22 04:48:35.420 INFO: Initial: head: Default, loss=0.00031303, RMSE_E_per_atom=    3.80 meV, RMSE_F=    3.52 meV / A
2026-11-22 04:48:39.199 INFO: Epoch 3: head: Default, loss=0.00031309, RMSE_E_per_atom=    3.76 meV, RMSE_F=    3.52 meV / A
2026-11-22 04:48:39.199 INFO: Epoch 3: head: other, loss=0.00041309, RMSE_E_per_atom=    4.76 meV, RMSE_F=    4.52 meV / A
2026-11-22 04:48:43.562 INFO: Epoch 4: head: Default, loss=nan, RMSE_E_per_atom=     nan meV, RMSE_F=     nan meV / A
2026-11-22 04:48:51.050 INFO: ===========RESULTS===========
2026-11-22 04:48:51.055 INFO: Loading checkpoint: ./checkpoints/mace_run-1_epoch-3.pt
2026-11-22 04:48:51.067 INFO: Loaded Stage one model from epoch 3 for evaluation
"""

TABLES = """\
2026-11-22 04:48:54.123 INFO: Error-table on TRAIN and VALID:
+---------------+--------------------+-----------------+------------------+
|  config_type  | MAE E / meV / atom | MAE F / meV / A | relative F MAE % |
+---------------+--------------------+-----------------+------------------+
| train_Default |            4.5     |          3.8    |         99.97    |
| valid_Default |            3.8     |          3.5    |        100.02    |
+---------------+--------------------+-----------------+------------------+
2026-11-22 04:48:54.243 INFO: Error-table on TEST:
+-----------------+--------------------+-----------------+------------------+
|   config_type   | MAE E / meV / atom | MAE F / meV / A | relative F MAE % |
+-----------------+--------------------+-----------------+------------------+
|   bulk_Default  |            4.8     |          5.2    |         99.97    |
| surface_Default |            6.1     |          7.0    |         80.00    |
+-----------------+--------------------+-----------------+------------------+
2026-11-22 04:48:55.598 INFO: Done
"""


def test_watcher_reports_each_epoch_once_and_notices_the_restart():
    events = []
    watcher = MaceLogWatcher(epochs=5, progress=events.append)
    for line in LOG.splitlines():
        watcher.feed(line + "\n")
    assert watcher.version == "0.3.16"
    assert watcher.restarted_from_epoch == 3  # the load after RESULTS is the final model, not a restart
    assert watcher.best_epoch == 3
    assert watcher.initial_validation == {"loss": 0.00031303, "RMSE_E_per_atom": 3.80, "RMSE_F": 3.52}
    assert watcher.epochs_seen == [3, 4]
    assert [(event.iteration, event.loss) for event in events] == [(4, 0.00031309), (5, None)]  # nan -> None
    assert events[0].fraction == pytest.approx(0.9 * 4 / 5)
    assert "RMSE_E_per_atom 3.76" in events[0].message


def test_committee_members_share_the_progress_bar():
    events = []
    watcher = MaceLogWatcher(epochs=2, progress=events.append, member=1, committee_size=2)
    watcher.feed("x INFO: Epoch 1: head: Default, loss=0.1, RMSE_E_per_atom= 1.0 meV, RMSE_F= 2.0 meV / A")
    assert events[0].fraction == pytest.approx(0.5 + 0.5 * 0.9) and events[0].message.startswith("model 2/2")


def test_error_tables_map_onto_our_metric_names_and_several_test_rows_stay_apart(tmp_path):
    rows = parse_error_tables(TABLES)
    assert rows["train_Default"] == {"energy_mae_mev_per_atom": 4.5, "forces_mae_mev_per_angstrom": 3.8,
                                     "forces_mae_relative_percent": 99.97}
    results = tmp_path / "results.txt"
    results.write_text("\n".join(json.dumps(entry) for entry in [
        {"loss": 0.2, "rmse_e_per_atom": 0.004, "mae_e_per_atom": 0.003, "rmse_f": 0.005, "mae_f": 0.004,
         "mode": "eval", "epoch": None, "head": "Default"},
        {"loss": 0.5, "mode": "opt", "epoch": 3}, {"loss": 0.3, "mode": "opt", "epoch": 3},
        {"loss": 0.1, "rmse_e_per_atom": 0.002, "mae_e_per_atom": 0.001, "rmse_f": 0.003, "mae_f": 0.0035,
         "mode": "eval", "epoch": 3, "head": "Default"},
    ]) + '\n{"loss": 0.1, "mo')  # a run killed mid-line
    final, history = collect_metrics(TABLES, read_results(results), best_epoch=3)
    assert final["valid_energy_mae_mev_per_atom"] == 3.8  # the table's value wins over the results file's
    assert final["valid_energy_rmse_mev_per_atom"] == pytest.approx(2.0)  # ...which fills in the missing RMSE
    assert final["test_bulk_Default_forces_mae_mev_per_angstrom"] == 5.2
    assert final["test_surface_Default_energy_mae_mev_per_atom"] == 6.1
    assert "test_energy_mae_mev_per_atom" not in final
    assert final["best_epoch"] == 3 and final["valid_loss"] == 0.1 and final["epochs"] == 1
    assert history["train_loss"] == [{"epoch": 3, "loss": pytest.approx(0.4)}]
    assert [entry["epoch"] for entry in history["valid"]] == [None, 3]


def test_missing_or_broken_tables_are_format_errors():
    with pytest.raises(MetricsFormatError, match="no final error table"):
        collect_metrics("INFO: Training complete\n", [], None)
    broken = TABLES.replace("|          3.8    |", "|          x.y    |")
    with pytest.raises(MetricsFormatError, match="'x.y'"):
        parse_error_tables(broken)


def test_command_line_uses_maces_option_names():
    config = MaceConfig(epochs=7, num_channels=16, max_L=0, E0s={"Cu": -3.7, "Ni": -1.5}, max_grad_norm=None,
                        swa=True, start_swa=5, ema=True, extra_args=["--patience", "3"])
    args = train_arguments(config, RunFiles("mace", 42), "/data/train.xyz", None, "cpu")
    pairs = dict(zip(args, args[1:], strict=False))
    assert pairs["--max_num_epochs"] == "7" and pairs["--num_channels"] == "16" and pairs["--max_L"] == "0"
    assert pairs["--E0s"] == "{28: -1.5, 29: -3.7}" and pairs["--clip_grad"] == "None"
    assert pairs["--start_swa"] == "5" and "--swa" in args and "--ema" in args
    assert pairs["--energy_key"] == "REF_energy" and pairs["--forces_key"] == "REF_forces"
    assert pairs["--pin_memory"] == "False" and pairs["--plot"] == "False"
    assert "--test_file" not in args and "--restart_latest" not in args and "--hidden_irreps" not in args
    assert args[-2:] == ["--patience", "3"]  # extra_args last, so they win
    irreps = train_arguments(MaceConfig(hidden_irreps="8x0e + 8x1o"), RunFiles("mace", 1), "t.xyz", "s.xyz", "cpu")
    assert "--hidden_irreps" in irreps and "--num_channels" not in irreps and "--test_file" in irreps


def test_cuda_request_without_cuda_falls_back_to_cpu_with_a_warning(monkeypatch):
    import mlip_autopipec.backends.runner as command

    monkeypatch.setattr(command, "_cuda_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        assert resolve_device("cuda") == "cpu"
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(command, "_cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"


def test_committee_deviation_is_dpgens_max_devi_f():
    forces = np.zeros((2, 3, 3))
    forces[0, 1] = [0.3, 0.0, 0.4]  # member 0 pushes atom 1 by 0.5 eV/A, member 1 does not
    deviations = committee_deviations(forces, np.array([-1.0, -1.2]), n_atoms=3)
    assert deviations["forces_std"] == pytest.approx([0.0, 0.25, 0.0])  # |F - <F>| = 0.25 for both members
    assert deviations["max_force_std"] == pytest.approx(0.25)
    assert deviations["energy_std"] == pytest.approx(0.1)
    assert deviations["energy_std_per_atom"] == pytest.approx(0.1 / 3)
