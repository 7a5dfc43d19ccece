"""Training metrics from pacemaker's files: metrics.txt (train) and test_metrics.txt (test), whitespace
tables with one row per iteration (test: every display_step) whose last row is the final potential,
in eV/atom and eV/Angstrom per force component; the energy MAE comes from its predictions of the
final potential (train_pred.pckl.gzip / test_pred.pckl.gzip). Ours are in meV/atom and meV/Angstrom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN_TABLE = "metrics.txt"
TEST_TABLE = "test_metrics.txt"
PREDICTIONS = {"train": "train_pred.pckl.gzip", "test": "test_pred.pckl.gzip"}


class MetricsFormatError(ValueError):
    pass


def read_metrics_table(path: Path) -> list[dict[str, float]]:
    """Rows of a pacemaker metrics table as {column: value}; header only -> []."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise MetricsFormatError(f"{path}: empty, not even a header line")
    header, rows = lines[0], []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(header):
            raise MetricsFormatError(f"{path} line {number}: {len(fields)} values for {len(header)} columns")
        try:
            rows.append({name: float(value) for name, value in zip(header, fields, strict=True)})
        except ValueError as exc:
            raise MetricsFormatError(f"{path} line {number}: {exc}") from None
    return rows


def collect_metrics(workdir: Path) -> tuple[dict[str, float], dict[str, list[dict[str, float]]]]:
    """(final metrics, per-iteration history per split) of the pacemaker run in `workdir`."""
    tables = {"train": read_metrics_table(workdir / TRAIN_TABLE)}
    if not tables["train"]:
        raise MetricsFormatError(f"{workdir / TRAIN_TABLE} has no iterations")
    if (workdir / TEST_TABLE).is_file():
        test_rows = read_metrics_table(workdir / TEST_TABLE)
        if test_rows:
            tables["test"] = test_rows

    final: dict[str, float] = {}
    history: dict[str, list[dict[str, float]]] = {}
    for split, rows in tables.items():
        history[split] = [_history_entry(row) for row in rows]
        final.update({f"{split}_{key}": value for key, value in history[split][-1].items()
                      if key not in ("ladder_step", "iteration")})
        energy_mae = _energy_mae_from_predictions(workdir / PREDICTIONS[split])
        if energy_mae is not None:
            final[f"{split}_energy_mae_mev_per_atom"] = 1e3 * energy_mae

    final_train = tables["train"][-1]
    final["iterations"] = float(sum(1 for row in tables["train"] if row["iter_num"] > 0))
    final["n_functions"] = final_train["nfuncs"]
    final["n_coefficients"] = final_train["ncoefs"]
    return final, history


def _history_entry(row: dict[str, float]) -> dict[str, float]:
    return {
        "ladder_step": row["ladder_step"],
        "iteration": row["iter_num"],
        "loss": row["loss"],
        "energy_rmse_mev_per_atom": 1e3 * row["rmse_epa"],
        "forces_rmse_mev_per_angstrom": 1e3 * row["rmse_f_comp"],
        "forces_mae_mev_per_angstrom": 1e3 * row["mae_f_comp"],
    }


def _energy_mae_from_predictions(path: Path) -> float | None:
    if not path.is_file():
        return None
    import pandas as pd

    table = pd.read_pickle(path, compression="gzip")
    per_atom_error = (table["energy_pred"] - table["energy_corrected"]) / table["NUMBER_OF_ATOMS"]
    return float(np.mean(np.abs(per_atom_error.to_numpy(dtype=float))))
