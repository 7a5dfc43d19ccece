"""Training metrics from what `mace_run_train` writes. At the end MACE logs error tables of the final
(best validation epoch, or stage-two) model:

    ... INFO: Error-table on TRAIN and VALID:
    +---------------+---------------------+------------------+-------------------+
    |  config_type  | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
    +---------------+---------------------+------------------+-------------------+
    | train_Default |            4.5      |          3.8     |         99.97     |
    | valid_Default |            3.8      |          3.5     |        100.02     |
    +---------------+---------------------+------------------+-------------------+
    ... INFO: Error-table on TEST:        (one row per config_type of the test file)

Columns follow --error_table; with swa the last tables are stage two's. `results/<tag>_train.txt`
holds one JSON object per line: "eval" lines the validation errors of every epoch (eV, full
precision), "opt" lines every batch's loss: the history. Metric names follow Pacemaker's
({split}_energy_rmse_mev_per_atom, ...); force errors are per Cartesian component.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

_TABLE_TITLE = re.compile(r"Error-table on (TRAIN and VALID|TEST):\s*$")

# MACE's column titles -> our metric suffixes.
COLUMNS = {
    "RMSE E / meV / atom": "energy_rmse_mev_per_atom",
    "MAE E / meV / atom": "energy_mae_mev_per_atom",
    "RMSE E / meV": "energy_rmse_mev",
    "MAE E / meV": "energy_mae_mev",
    "RMSE F / meV / A": "forces_rmse_mev_per_angstrom",
    "MAE F / meV / A": "forces_mae_mev_per_angstrom",
    "relative F RMSE %": "forces_rmse_relative_percent",
    "relative F MAE %": "forces_mae_relative_percent",
    "RMSE Stress (Virials) / meV / A (A^3)": "stress_rmse_mev_per_angstrom3",
    "MAE Stress (Virials) / meV / A (A^3)": "stress_mae_mev_per_angstrom3",
}
# results-file keys (eV) -> our metric suffixes (meV), for the history and full-precision values.
RESULT_KEYS = {
    "rmse_e_per_atom": "energy_rmse_mev_per_atom",
    "mae_e_per_atom": "energy_mae_mev_per_atom",
    "rmse_f": "forces_rmse_mev_per_angstrom",
    "mae_f": "forces_mae_mev_per_angstrom",
}


class MetricsFormatError(ValueError):
    pass


def parse_error_tables(text: str) -> dict[str, dict[str, float]]:
    """{row name: {our metric suffix: value}} from the last error tables in a MACE log."""
    rows: dict[str, dict[str, float]] = {}
    header: list[str] | None = None
    in_table = False
    for line in text.splitlines():
        if _TABLE_TITLE.search(line):
            in_table, header = True, None
        elif in_table and not line.startswith(("+", "|")):
            in_table = False
        elif in_table and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
                continue
            if len(cells) != len(header):
                raise MetricsFormatError(f"error table row {line!r} has {len(cells)} cells for {len(header)} columns")
            values = {}
            for title, cell in zip(header[1:], cells[1:], strict=True):
                if COLUMNS.get(title) is None or cell in {"", "None"}:
                    continue
                try:
                    values[COLUMNS[title]] = float(cell)
                except ValueError:
                    raise MetricsFormatError(f"error table cell {cell!r} under {title!r} is not a number") from None
            rows[cells[0]] = values
    return rows


def read_results(path: Path) -> list[dict]:
    """The JSON objects of a MACE results file; a half-written last line (a killed run) is skipped."""
    entries = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def validation_history(entries: list[dict]) -> list[dict]:
    """One entry per validation: epoch (None before training), loss, errors in meV."""
    history = []
    for entry in entries:
        if entry.get("mode") != "eval":
            continue
        item = {"epoch": entry.get("epoch"), "head": entry.get("head"), "loss": _finite(entry.get("loss"))}
        for key, name in RESULT_KEYS.items():
            if entry.get(key) is not None:
                item[name] = _finite(1e3 * entry[key])
        history.append(item)
    return history


def collect_metrics(log_text: str, results_entries: list[dict], best_epoch: int | None
                    ) -> tuple[dict[str, float], dict[str, list]]:
    """(final metrics, history) of one MACE run, from its log text and results-file entries."""
    tables = parse_error_tables(log_text)
    if not tables:
        raise MetricsFormatError("the log holds no final error table (did the run reach ===RESULTS===?)")
    final: dict[str, float] = {}
    test_rows = [name for name in tables if not name.startswith(("train_", "valid_"))]
    for name, values in tables.items():
        prefix = name.split("_", 1)[0] if name not in test_rows else "test" if len(test_rows) == 1 else f"test_{name}"
        final.update({f"{prefix}_{key}": value for key, value in values.items()})

    history = validation_history(results_entries)
    epochs = sorted({entry["epoch"] for entry in history if entry["epoch"] is not None})
    if epochs:
        final["epochs"] = float(len(epochs))
        final["last_epoch"] = float(epochs[-1])
    if best_epoch is not None:
        final["best_epoch"] = float(best_epoch)
        # The full-precision validation errors of the saved epoch complete the table's columns.
        best = [entry for entry in history if entry["epoch"] == best_epoch]
        if best:
            final["valid_loss"] = best[-1]["loss"]
            for key in RESULT_KEYS.values():
                if key in best[-1] and f"valid_{key}" not in final:
                    final[f"valid_{key}"] = best[-1][key]
    per_epoch_loss: dict[int, list[float]] = {}
    for entry in results_entries:
        if entry.get("mode") == "opt" and entry.get("epoch") is not None and entry.get("loss") is not None:
            per_epoch_loss.setdefault(int(entry["epoch"]), []).append(float(entry["loss"]))
    train_history = [{"epoch": epoch, "loss": _finite(sum(losses) / len(losses))}
                     for epoch, losses in sorted(per_epoch_loss.items())]
    return final, {"valid": history, "train_loss": train_history}


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
