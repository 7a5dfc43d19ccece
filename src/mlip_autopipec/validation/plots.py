"""Plots a person would rather look at than read (PNG): parity plots, error histograms, the γ
histograms of a test set and a campaign's learning curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlip_autopipec.files import atomic_path
from mlip_autopipec.validation.errors import Predictions

if TYPE_CHECKING:  # the campaign package sits above validation; only its record's fields are read
    from mlip_autopipec.campaign.records import GenerationRecord


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (workers and CI have no display), imported on
    first use: about a second that commands which import this module but never plot do not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parity_plot(predictions: Predictions, target: str | Path, title: str = "") -> Path:
    """Energy-per-atom and force-component parity side by side, with RMSE in each panel."""
    metrics = predictions.summary()
    figure, (energy_axis, force_axis) = pyplot().subplots(1, 2, figsize=(10, 4.6))
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
    figure, (energy_axis, force_axis) = pyplot().subplots(1, 2, figsize=(10, 4))
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


GAMMA_EXTRAPOLATION = 1.0  # γ > 1: the environment lies outside the active set
GAMMA_UNRELIABLE = 5.0  # γ beyond ~5: predictions are not to be trusted


def gamma_histograms(max_gamma: np.ndarray, atom_gamma: np.ndarray, target: str | Path, title: str = "") -> Path:
    """Extrapolation grade γ: largest per structure (left) and every atom's (right, log counts)."""
    figure, (structure_axis, atom_axis) = pyplot().subplots(1, 2, figsize=(10, 4))
    structures, atoms = np.asarray(max_gamma, dtype=float), np.asarray(atom_gamma, dtype=float)
    structure_axis.hist(structures, bins=_bins(structures, max(5, min(40, len(structures)))), color="tab:green")
    structure_axis.set_xlabel("max γ per structure")
    structure_axis.set_ylabel("structures")
    atom_axis.hist(atoms, bins=_bins(atoms, 60), color="tab:olive", log=True)
    atom_axis.set_xlabel("γ per atom")
    atom_axis.set_ylabel("atoms")
    structure_axis.yaxis.get_major_locator().set_params(integer=True)
    levels = [(GAMMA_EXTRAPOLATION, "--")]
    if structures.max() > 0.5 * GAMMA_UNRELIABLE:  # else the line only squeezes the histogram
        levels.append((GAMMA_UNRELIABLE, ":"))
    for axis in (structure_axis, atom_axis):
        for level, style in levels:
            axis.axvline(level, color="0.3", linestyle=style, linewidth=1, label=f"γ = {level:g}")
        axis.legend(fontsize=8)
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
    pyplot().close(figure)
    return Path(target)


def learning_curve(records: Sequence[GenerationRecord], target: str | Path, title: str = "") -> Path:
    """Held-out RMSE (energy per atom and forces) against the number of labelled structures each
    generation was trained on, one point per generation, labelled with its number. Log-log when every value is positive and the labels span
    more than a factor of 3 (the power-law regime of a learning curve); linear otherwise."""
    if not records:
        raise ValueError("no generation records: nothing to plot")
    ordered = sorted(records, key=lambda record: record.generation)
    labels = np.array([record.labels_trained_on for record in ordered], dtype=float)
    panels = [("held_out_energy_rmse_mev_per_atom", "energy RMSE (meV/atom)", "tab:blue"),
              ("held_out_forces_rmse_mev_per_angstrom", "force RMSE (meV/Å)", "tab:orange")]
    figure, axes = pyplot().subplots(1, 2, figsize=(10, 4.2))
    for axis, (field, axis_label, colour) in zip(axes, panels):
        rmse = np.array([getattr(record, field) for record in ordered], dtype=float)
        axis.plot(labels, rmse, "o-", color=colour, markersize=6)
        for record, x, y in zip(ordered, labels, rmse):
            axis.annotate(f"gen {record.generation}", (x, y), textcoords="offset points", xytext=(4, 4),
                          fontsize=8)
        if np.all(labels > 0) and np.all(rmse > 0) and labels.max() > 3 * labels.min():
            axis.set_xscale("log")
            axis.set_yscale("log")
        axis.set_xlabel("labelled structures trained on")
        axis.set_ylabel(f"held-out {axis_label}")
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(title or "learning curve")
    figure.tight_layout()
    return _save(figure, target)


THUMBNAIL_WIDTH = 480  # px: readable in the Prefect UI, ~20-40 kB per picture in its database


def thumbnail_uri(png: str | Path, width: int = THUMBNAIL_WIDTH, colours: int = 64) -> str | None:
    """A small copy of the picture `png` as a data: URI (PNG, `colours` palette colours), for Markdown
    that must show the picture where no server can serve the file (a Prefect artifact, rendered by the
    UI in the browser); None when the file is missing or unreadable."""
    import base64
    import io

    from PIL import Image

    try:
        with Image.open(png) as image:
            image = image.convert("RGB")
            if image.width > width:
                image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
            small = image.quantize(colors=colours)
    except (OSError, ValueError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def markdown_image(caption: str, png: str | Path, width: int = THUMBNAIL_WIDTH) -> list[str]:
    """Markdown lines showing `png` inline as a thumbnail (the file's path below it), or only its path
    when it cannot be read."""
    uri = thumbnail_uri(png, width)
    path = f"`{Path(png).resolve()}`"
    return [f"![{caption}]({uri})", "", path] if uri else [f"{caption}: {path} (not readable)"]
