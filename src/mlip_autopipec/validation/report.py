"""Validate a potential and write what a person reads: `validation_metrics.json`, `report.md`, PNG plots.

    report = validate_potential(calculator, frames, out_dir, reference=EMT(), structure=cubic_crystal("Cu", "fcc", 3.61))

The Markdown report is self-contained: the plots sit next to it and are linked by relative path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from mlip_autopipec.backends.potentials import load_potential, potential_energy_reference
from mlip_autopipec.data.frames import EnergyReference, LabelledFrame
from mlip_autopipec.data.problems import FrameProblem
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.files import atomic_path, atomic_write_text
from mlip_autopipec.validation.errors import predict
from mlip_autopipec.validation.physical import (
    PhysicalComparison,
    compare_physical,
    per_element_force_errors,
)
from mlip_autopipec.validation.plots import (
    GAMMA_EXTRAPOLATION,
    GAMMA_UNRELIABLE,
    error_histogram,
    gamma_histograms,
    parity_plot,
    pyplot,
)

__all__ = ["METRICS_NAME", "REPORT_NAME", "eos_plot", "gamma_statistics", "load_potential", "load_validation_frames",
           "potential_energy_reference", "report_markdown", "stress_errors", "validate_potential"]
# load_potential / potential_energy_reference live with the backends (backends/potentials.py).
METRICS_NAME = "validation_metrics.json"
REPORT_NAME = "report.md"


def load_validation_frames(paths: Sequence[str | os.PathLike]) -> tuple[list[LabelledFrame], list[str], list[dict]]:
    """Frames with energy and forces from every file, their labels (`file:index`) and the skipped ones.

    Raises FileNotFoundError naming a missing file, ValueError when nothing usable is left."""
    frames, labels, skipped = [], [], []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} does not exist")
        for index, item in read_labelled_frames(path):
            if isinstance(item, FrameProblem):
                skipped.append({"file": str(path), "frame": index, "problem": str(item)})
            elif item.energy is None or item.forces is None or not math.isfinite(item.energy):
                skipped.append({"file": str(path), "frame": index, "problem": "no energy or forces label"})
            else:
                frames.append(item)
                labels.append(f"{path.name}:{index}")
    if not frames:
        raise ValueError(f"no labelled frames (energy and forces) in {', '.join(map(str, paths))}"
                         + (f"; first problem: {skipped[0]['problem']}" if skipped else ""))
    return frames, labels, skipped


def validate_potential(calculator: Calculator, frames: Sequence[LabelledFrame], out_dir: str | os.PathLike,
                       labels: Sequence[str] = (), reference: Calculator | None = None,
                       reference_name: str | None = None, structure: Atoms | None = None,
                       title: str = "potential", skipped: Sequence[dict] = (), extra: dict | None = None,
                       energy_reference: EnergyReference = EnergyReference(),
                       physical_skipped: str | None = None) -> dict:
    """Test-set errors (+ per element), physical checks when `structure` is given, plots and report.

    A physical check that does not apply (`physical_skipped` says why) or fails (a reference that
    cannot do an element, an equation of state without a minimum) is reported as skipped with its
    reason; the errors, plots and report are written either way.

    Returns the metrics dictionary that is also written to `out_dir/validation_metrics.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions = predict(calculator, frames, labels, energy_reference=energy_reference)
    gamma = None
    symbols = [s for frame in frames for s in frame.atoms.get_chemical_symbols()]
    plots = {
        "parity": parity_plot(predictions, out / "parity.png", f"{title}: {len(frames)} structures").name,
        "errors": error_histogram(predictions, out / "errors.png", title).name,
    }
    if predictions.atom_gamma is not None:
        gamma = gamma_statistics(predictions.max_gamma, predictions.atom_gamma)
        plots["gamma"] = gamma_histograms(predictions.max_gamma, predictions.atom_gamma, out / "gamma.png",
                                          title).name
    stress = stress_errors(calculator, frames)
    physical = None if physical_skipped is None else {"skipped": physical_skipped}
    if structure is not None and physical_skipped is None:
        try:
            comparison = compare_physical(calculator, structure, reference, reference_name)
        except Exception as exc:  # any calculator's failure on the crystal: the rest of the report stands
            physical = {"skipped": f"{structure.get_chemical_formula()}: {type(exc).__name__}: {exc}"}
        else:
            physical = comparison.to_dict()
            plots["eos"] = eos_plot(comparison, out / "eos.png", title).name
    metrics = {
        "title": title,
        "frames": len(frames),
        "skipped_frames": list(skipped),
        "test_set": predictions.summary(),
        "energy_compared_with": predictions.energy_label,
        "stress": stress,
        "gamma": gamma,
        "per_element": per_element_force_errors(predictions, symbols),
        "worst_frames": predictions.worst_frames(),
        "physical": physical,
        "plots": plots,
        **(extra or {}),
    }
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2, default=_json_default) + "\n")
    atomic_write_text(out / REPORT_NAME, report_markdown(metrics))
    return metrics


def stress_errors(calculator: Calculator, frames: Sequence[LabelledFrame]) -> dict[str, float] | None:
    """Stress RMSE and MAE in GPa over the Voigt components of the periodic frames labelled with
    stress; None when none is (or the calculator gives no stress)."""
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.units import GPa

    reference, predicted = [], []
    for frame in frames:
        if frame.stress is None or not frame.atoms.pbc.all():
            continue
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        try:
            predicted.append(np.asarray(atoms.get_stress(voigt=True), dtype=float))
        except (PropertyNotImplementedError, NotImplementedError):
            return None
        labelled = np.asarray(frame.stress, dtype=float)
        if labelled.shape == (3, 3):
            labelled = labelled[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        reference.append(labelled.reshape(6))
    if not reference:
        return None
    error = (np.array(predicted) - np.array(reference)).reshape(-1) / GPa
    return {"stress_rmse_gpa": float(np.sqrt(np.mean(error ** 2))), "stress_mae_gpa": float(np.mean(np.abs(error))),
            "frames": float(len(reference))}


def gamma_statistics(max_gamma: np.ndarray, atom_gamma: np.ndarray) -> dict[str, float]:
    """Extrapolation grades of the test set: per structure (its largest atomic γ) and per atom,
    with the fractions beyond γ = 1 (extrapolating) and γ = 5 (unreliable)."""
    structures, atoms = np.asarray(max_gamma, dtype=float), np.asarray(atom_gamma, dtype=float)
    return {
        "structures": int(len(structures)),
        "atoms": int(len(atoms)),
        "max": float(structures.max()),
        "structure_median": float(np.median(structures)),
        "structure_p90": float(np.percentile(structures, 90)),
        "structure_fraction_above_1": float(np.mean(structures > GAMMA_EXTRAPOLATION)),
        "structure_fraction_above_5": float(np.mean(structures > GAMMA_UNRELIABLE)),
        "atom_median": float(np.median(atoms)),
        "atom_p90": float(np.percentile(atoms, 90)),
        "atom_fraction_above_1": float(np.mean(atoms > GAMMA_EXTRAPOLATION)),
        "atom_fraction_above_5": float(np.mean(atoms > GAMMA_UNRELIABLE)),
    }


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- plots ---------------------------------------------------------------------------------------

def eos_plot(comparison: PhysicalComparison, target: str | Path, title: str = "") -> Path:
    """E(V) - E0 per atom of the potential and the reference (each from its own minimum, since
    their energy zeros differ), scanned points and fitted equilibrium volumes."""
    figure, axis = pyplot().subplots(figsize=(6.4, 4.6))
    curves = [("potential", comparison.potential, "tab:blue")]
    if comparison.reference is not None:
        curves.append((comparison.reference_name or "reference", comparison.reference, "tab:red"))
    for name, props, colour in curves:
        eos = props.eos
        relative = 1000.0 * (np.asarray(eos.energies_per_atom) - eos.e0_per_atom)
        axis.plot(eos.volumes_per_atom, relative, "o-", color=colour, markersize=4,
                  label=f"{name}: V0 {eos.v0_per_atom:.2f} Å³, B {eos.bulk_modulus_gpa:.0f} GPa")
        axis.axvline(eos.v0_per_atom, color=colour, linewidth=0.8, linestyle=":")
    axis.set_xlabel("volume per atom (Å³)")
    axis.set_ylabel("E − E0 per atom (meV)")
    axis.legend(fontsize=8)
    heading = f"equation of state of {comparison.structure['formula']}"
    axis.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    figure.tight_layout()
    return _save(figure, target)


def _save(figure, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    pyplot().close(figure)
    return Path(target)


# -- report --------------------------------------------------------------------------------------

_PLOT_CAPTIONS = {"parity": "Parity: predicted vs reference", "errors": "Error histograms",
                  "gamma": "Extrapolation grade γ of the test set, per structure and per atom",
                  "eos": "Equation of state"}
_PHYSICAL_ROWS = [("v0_per_atom", "V0 (Å³/atom)"), ("lattice_constant", "a0 (Å)"),
                  ("bulk_modulus_gpa", "B (GPa)"), ("c11_gpa", "C11 (GPa)"), ("c12_gpa", "C12 (GPa)"),
                  ("c44_gpa", "C44 (GPa)")]


def report_markdown(metrics: dict) -> str:
    """The report as Markdown; plot links are relative to the report's directory."""
    test = metrics["test_set"]
    lines = [
        f"# Validation of {metrics['title']}",
        "",
        f"{metrics['frames']} labelled structures"
        + (f" ({len(metrics['skipped_frames'])} skipped: no labels or unreadable)" if metrics["skipped_frames"] else "")
        + ".",
        "",
        "| quantity | RMSE | MAE |",
        "|---|---|---|",
        f"| energy (meV/atom) | {test['energy_rmse_mev_per_atom']:.3f} | {test['energy_mae_mev_per_atom']:.3f} |",
        f"| forces (meV/Å) | {test['forces_rmse_mev_per_angstrom']:.2f} | {test['forces_mae_mev_per_angstrom']:.2f} |",
        "",
        f"Energies are compared with the labels' {metrics.get('energy_compared_with', 'energy')}: the energy "
        "the potential was fitted to.",
    ]
    stress = metrics.get("stress")
    if stress:
        lines.append(f"| stress (GPa, {int(stress['frames'])} frames) | {stress['stress_rmse_gpa']:.4f} | "
                     f"{stress['stress_mae_gpa']:.4f} |")
    gamma = metrics.get("gamma")
    if gamma:
        lines += ["", f"Extrapolation grade γ: largest **{gamma['max']:.3g}**; per structure (max over its atoms) "
                      f"median {gamma['structure_median']:.3g}, 90th percentile {gamma['structure_p90']:.3g}, "
                      f"{100 * gamma['structure_fraction_above_1']:.0f} % of structures above γ = 1 and "
                      f"{100 * gamma['structure_fraction_above_5']:.0f} % above γ = 5; per atom median "
                      f"{gamma['atom_median']:.3g}, {100 * gamma['atom_fraction_above_1']:.1f} % of "
                      f"{gamma['atoms']} atoms above γ = 1."]
    lines += ["", "## Forces per element", "", "| element | atoms | RMSE (meV/Å) | MAE (meV/Å) |", "|---|---|---|---|"]
    lines += [f"| {el} | {row['atoms']} | {row['forces_rmse_mev_per_angstrom']:.2f} | "
              f"{row['forces_mae_mev_per_angstrom']:.2f} |" for el, row in metrics["per_element"].items()]
    lines += ["", "## Worst structures", "",
              "| structure | atoms | energy error (meV/atom) | force RMSE (meV/Å) |", "|---|---|---|---|"]
    lines += [f"| {w['label']} | {w['atoms']} | {w['energy_error_mev_per_atom']:.2f} | "
              f"{w['forces_rmse_mev_per_angstrom']:.1f} |" for w in metrics["worst_frames"]]
    physical = metrics.get("physical")
    if physical and "skipped" in physical:
        lines += ["", "## Physical checks", "", f"Skipped: {physical['skipped']}"]
    elif physical:
        structure = physical["structure"]
        reference = physical.get("reference")
        name = physical.get("reference_name") or "reference"
        lines += ["", "## Physical checks", "",
                  f"{structure['formula']} ({structure['atoms']} atoms, starting lattice constant "
                  f"{structure['lattice_constant']:.3f} Å). Elastic constants at each calculator's own "
                  f"equilibrium volume, from {physical['potential']['elastic']['method'] if physical['potential']['elastic'] else '-'}.",
                  ""]
        if reference:
            lines += [f"| property | potential | {name} | relative error |", "|---|---|---|---|"]
        else:
            lines += ["| property | potential |", "|---|---|"]
        mine, theirs = physical["potential"]["scalars"], (reference or {}).get("scalars", {})
        for key, label in _PHYSICAL_ROWS:
            if key not in mine:
                continue
            if reference:
                rel = physical["relative_errors"].get(key, float("nan"))
                lines.append(f"| {label} | {mine[key]:.4g} | {theirs[key]:.4g} | {100 * rel:+.2f} % |")
            else:
                lines.append(f"| {label} | {mine[key]:.4g} |")
        if physical["potential"].get("born_stable") is False:
            lines += ["", "**The potential's crystal is mechanically unstable** (Born criteria: "
                      "C11 > |C12|, C11 + 2 C12 > 0, C44 > 0 fail)."]
    lines += ["", "## Plots", ""]
    for key, filename in metrics["plots"].items():
        lines += [f"### {_PLOT_CAPTIONS.get(key, key)}", "", f"![{key}]({filename})", ""]
    return "\n".join(lines)
