"""Learning curves of the active-learning benchmark: mean and spread over seeds, the label-saving
headline, and the log-log plot.

The headline follows the issue: the force RMSE that random selection reaches with its full label
budget is the target; for every strategy, the number of labels at which its mean curve first
reaches that target, interpolated linearly in log-log between measured points (the plot's axes).
The label-saving ratio divides the labels random needs by that number (see `headline`). The same is
done for labelled atoms, because a selection that prefers big structures costs more DFT per label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mlip_autopipec.files import atomic_path

RANDOM = "random"


def labels_to_reach(labels: Sequence[float], rmse: Sequence[float], target: float) -> float | None:
    """Labels at which the curve first falls to `target` (log-log interpolation); None if it never does."""
    if len(labels) != len(rmse) or not labels:
        raise ValueError(f"a curve needs as many RMSE values as label counts, got {len(rmse)} and {len(labels)}")
    if rmse[0] <= target:
        return float(labels[0])
    for (n0, e0), (n1, e1) in zip(zip(labels, rmse), zip(labels[1:], rmse[1:])):
        if e0 > target >= e1:
            fraction = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            return float(math.exp(math.log(n0) + fraction * (math.log(n1) - math.log(n0))))
    return None


def summarize(runs: Mapping[str, Sequence[Mapping]]) -> dict[str, dict]:
    """Per strategy: label counts and mean / std / min / max over seeds of the test errors.

    `runs[strategy]` is one curve per seed, each with `labels`, `labelled_atoms`, `energy_rmse` and
    `force_rmse` lists; labelled atoms are averaged (selection decides how big the labelled frames are).
    """
    summary = {}
    for strategy, curves in runs.items():
        labels = curves[0]["labels"]
        if any(curve["labels"] != labels for curve in curves):
            raise ValueError(f"{strategy}: seeds disagree on the label counts")
        entry: dict = {"labels": list(labels), "seeds": len(curves),
                       "labelled_atoms": np.mean([curve["labelled_atoms"] for curve in curves], axis=0).tolist()}
        for key in ("energy_rmse", "force_rmse"):
            values = np.array([curve[key] for curve in curves], dtype=float)
            entry[key] = {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0).tolist(),
                          "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()}
        summary[strategy] = entry
    return summary


def headline(summary: Mapping[str, Mapping], runs: Mapping[str, Sequence[Mapping]]) -> dict:
    """Labels (and labelled atoms) each strategy needs to reach random's full-budget force RMSE.

    The ratio's numerator is where random's own curve first reaches that RMSE: its full budget, or
    fewer labels when its curve dipped below its last point earlier. So random scores exactly 1 and
    noise in random's last point does not flatter the other strategies.
    """
    if RANDOM not in summary:
        raise ValueError("the headline compares against random selection: include the 'random' strategy")
    random_entry = summary[RANDOM]
    target = random_entry["force_rmse"]["mean"][-1]
    random_needed = labels_to_reach(random_entry["labels"], random_entry["force_rmse"]["mean"], target)
    random_atoms = labels_to_reach(random_entry["labelled_atoms"], random_entry["force_rmse"]["mean"], target)
    result: dict = {"target_force_rmse_mev_per_angstrom": target, "random_budget_labels": random_entry["labels"][-1],
                    "random_labels_to_reach_target": random_needed, "strategies": {}}
    for strategy, entry in summary.items():
        needed = labels_to_reach(entry["labels"], entry["force_rmse"]["mean"], target)
        atoms = labels_to_reach(entry["labelled_atoms"], entry["force_rmse"]["mean"], target)
        per_seed = []
        for curve, random_curve in zip(runs[strategy], runs[RANDOM]):
            seed_target = random_curve["force_rmse"][-1]
            seed_needed = labels_to_reach(curve["labels"], curve["force_rmse"], seed_target)
            seed_random = labels_to_reach(random_curve["labels"], random_curve["force_rmse"], seed_target)
            per_seed.append(None if seed_needed is None else seed_random / seed_needed)
        result["strategies"][strategy] = {
            "labels_needed": needed,
            "label_saving_ratio": None if needed is None else random_needed / needed,
            "label_saving_ratio_per_seed": per_seed,
            "labelled_atoms_needed": atoms,
            "atom_saving_ratio": None if atoms is None else random_atoms / atoms,
            "final_force_rmse_mev_per_angstrom": entry["force_rmse"]["mean"][-1],
            "final_energy_rmse_mev_per_atom": entry["energy_rmse"]["mean"][-1],
            "final_labelled_atoms": entry["labelled_atoms"][-1],
        }
    return result


def headline_table(result: Mapping) -> str:
    """The headline as a markdown table."""
    lines = [f"target: random's mean force RMSE at {result['random_budget_labels']} labels, "
             f"{result['target_force_rmse_mev_per_angstrom']:.1f} meV/Å",
             "",
             "| strategy | labels to reach target | label-saving ratio | per seed | labelled atoms to reach "
             "| atom-saving ratio | final force RMSE meV/Å | final energy RMSE meV/atom |",
             "|---|---|---|---|---|---|---|---|"]
    for strategy, entry in result["strategies"].items():
        lines.append(" | ".join([
            f"| {strategy}", _number(entry["labels_needed"], ".1f", "not reached"),
            _number(entry["label_saving_ratio"], ".2f", "-"),
            ", ".join(_number(value, ".2f", "n/r") for value in entry["label_saving_ratio_per_seed"]),
            _number(entry["labelled_atoms_needed"], ".0f", "not reached"),
            _number(entry["atom_saving_ratio"], ".2f", "-"),
            f"{entry['final_force_rmse_mev_per_angstrom']:.1f}",
            f"{entry['final_energy_rmse_mev_per_atom']:.2f} |"]))
    return "\n".join(lines)


def _number(value: float | None, spec: str, missing: str) -> str:
    return missing if value is None else format(value, spec)


def plot(summary: Mapping[str, Mapping], result: Mapping, title: str, path: str | Path) -> Path:
    """Force and energy RMSE against labels, log-log; lines are seed means, bands span min..max."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy, entry in summary.items():
        labels = entry["labels"]
        for axis, key in zip(axes, ("force_rmse", "energy_rmse")):
            stats = entry[key]
            (line,) = axis.plot(labels, stats["mean"], marker="o", label=f"{strategy} ({entry['seeds']} seeds)")
            axis.fill_between(labels, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
    axes[0].axhline(result["target_force_rmse_mev_per_angstrom"], color="grey", linestyle="--",
                    label="random at full budget")
    axes[0].set_ylabel("test force RMSE (meV/Å)")
    axes[1].set_ylabel("test energy RMSE (meV/atom)")
    label_counts = sorted({n for entry in summary.values() for n in entry["labels"]})
    for axis in axes:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(label_counts)  # the measured label counts, written out
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("labelled structures")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return Path(path)
