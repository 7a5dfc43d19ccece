"""Plots a person would rather look at than read: parity plots and error histograms (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlip_autopipec.files import atomic_path  # noqa: E402
from mlip_autopipec.validation.errors import Predictions  # noqa: E402


def parity_plot(predictions: Predictions, target: str | Path, title: str = "") -> Path:
    """Energy-per-atom and force-component parity side by side, with RMSE in each panel."""
    metrics = predictions.summary()
    figure, (energy_axis, force_axis) = plt.subplots(1, 2, figsize=(10, 4.6))
    per_atom_ref = predictions.energy_reference / predictions.n_atoms
    per_atom_pred = predictions.energy_predicted / predictions.n_atoms
    _parity(energy_axis, per_atom_ref, per_atom_pred, "energy per atom (eV/atom)",
            f"RMSE {metrics['energy_rmse_mev_per_atom']:.2f} meV/atom")
    _parity(force_axis, predictions.forces_reference.reshape(-1), predictions.forces_predicted.reshape(-1),
            "force component (eV/Å)", f"RMSE {metrics['forces_rmse_mev_per_angstrom']:.1f} meV/Å")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, target)


def error_histogram(predictions: Predictions, target: str | Path, title: str = "") -> Path:
    figure, (energy_axis, force_axis) = plt.subplots(1, 2, figsize=(10, 4))
    energy_errors = 1000.0 * predictions.energy_per_atom_error
    force_errors = 1000.0 * predictions.force_error.reshape(-1)
    energy_axis.hist(energy_errors, bins=_bins(energy_errors, 40), color="tab:blue")
    energy_axis.set_xlabel("energy error (meV/atom)")
    force_axis.hist(force_errors, bins=_bins(force_errors, 60), color="tab:orange")
    force_axis.set_xlabel("force component error (meV/Å)")
    for axis in (energy_axis, force_axis):
        axis.set_ylabel("count")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, target)


def _bins(values: np.ndarray, wanted: int) -> int:
    """numpy refuses many bins over a (nearly) zero range, e.g. identical errors."""
    return wanted if np.ptp(values) > 1e-9 * max(1.0, float(np.abs(values).max())) else 1


def _parity(axis, reference: np.ndarray, predicted: np.ndarray, label: str, note: str) -> None:
    low = float(min(reference.min(), predicted.min()))
    high = float(max(reference.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="0.6", linewidth=1)
    axis.scatter(reference, predicted, s=6, alpha=0.6)
    axis.set_xlabel(f"reference {label}")
    axis.set_ylabel(f"predicted {label}")
    axis.text(0.04, 0.94, note, transform=axis.transAxes, va="top")


def _save(figure, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return Path(target)
