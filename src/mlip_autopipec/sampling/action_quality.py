"""Action-quality report: how well each action type does, from a run's steps.jsonl.

Per action: attempts, accepted, rejection rate and reasons (by validator), model forces on the
action's structure before the quench (force_pre) and after it (force_post), the rate of new
basins among accepted steps and the rate of DFT triggers among all attempts. Written as
`action_quality.json`, `action_quality.md` and `action_quality.png` beside steps.jsonl.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from mlip_autopipec.files import atomic_path, atomic_write_text
from mlip_autopipec.sampling.recorders import STEPS_FILE, read_lines

JSON_NAME = "action_quality.json"
MARKDOWN_NAME = "action_quality.md"
PLOT_NAME = "action_quality.png"
ALL = "all"
COLUMNS = ["action", "attempts", "accepted", "rejected", "rejection_rate", "rejection_reasons",
           "force_pre_mean", "force_pre_max", "force_post_mean", "new_basins", "new_basin_rate",
           "triggered", "trigger_rate", "magnitude_mean", "unit"]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _row(action: str, steps: list[dict]) -> dict:
    accepted = [s for s in steps if s["accepted"]]
    rejected = [s for s in steps if not s["accepted"]]
    pre = [s["force_pre"]["max"] for s in steps if s.get("force_pre")]
    post = [s["force_post"]["max"] for s in accepted if s.get("force_post")]
    new = sum(1 for s in accepted if s.get("new_basin"))
    triggered = sum(1 for s in accepted if s.get("triggered_by"))
    units = {s["unit"] for s in steps}
    return {
        "action": action, "attempts": len(steps), "accepted": len(accepted), "rejected": len(rejected),
        "rejection_rate": len(rejected) / len(steps) if steps else 0.0,
        "rejection_reasons": dict(sorted(Counter(s["rejected_by"] for s in rejected).items())),
        "force_pre_mean": _mean(pre), "force_pre_max": max(pre) if pre else None, "force_post_mean": _mean(post),
        "new_basins": new, "new_basin_rate": new / len(accepted) if accepted else 0.0,
        "triggered": triggered, "trigger_rate": triggered / len(steps) if steps else 0.0,
        "magnitude_mean": _mean([s["magnitude"] for s in steps]) if len(units) == 1 else None,
        "unit": units.pop() if len(units) == 1 else "",
    }


def action_quality(run_dir: str | Path) -> list[dict]:
    """One row per action type (alphabetical) and a last row `all`; raises if there are no steps."""
    path = Path(run_dir) / STEPS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a sampling run directory")
    steps = read_lines(path)
    if not steps:
        raise ValueError(f"{path} holds no steps")
    for number, step in enumerate(steps, start=1):
        missing = [k for k in ("action", "accepted", "magnitude", "unit") if k not in step]
        if missing:
            raise ValueError(f"{path}: line {number} lacks field(s) {', '.join(missing)}")
    by_action: dict[str, list[dict]] = {}
    for step in steps:
        by_action.setdefault(step["action"], []).append(step)
    return [_row(name, by_action[name]) for name in sorted(by_action)] + [_row(ALL, steps)]


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "–"
    return str(value)


HEADERS = {"action": "action", "attempts": "attempts", "accepted": "accepted", "rejected": "rejected",
           "rejection_rate": "reject rate", "rejection_reasons": "reasons", "force_pre_mean": "F pre mean (eV/Å)",
           "force_pre_max": "F pre max (eV/Å)", "force_post_mean": "F post mean (eV/Å)",
           "new_basins": "new basins", "new_basin_rate": "new basin rate", "triggered": "triggered",
           "trigger_rate": "trigger rate", "magnitude_mean": "magnitude mean", "unit": "unit"}


def table_text(rows: list[dict]) -> str:
    """A plain-text table for the terminal."""
    cells = [[HEADERS[c] for c in COLUMNS]] + [[_cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def table_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict:
    """Compute the table and write JSON, Markdown and the plot; returns paths and rows."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    rows = action_quality(run_dir)
    total = rows[-1]
    plot = plot_rates(rows, out_dir / PLOT_NAME)
    markdown = (f"# Action quality: {run_dir.name}\n\n"
                f"{total['attempts']} attempts, {total['rejected']} rejected "
                f"({100 * total['rejection_rate']:.1f} %), {total['new_basins']} new basins, "
                f"{total['triggered']} DFT candidates.\n\n{table_markdown(rows)}\n\n"
                f"F pre: largest atomic force of the action's structure before the quench; F post: after it. "
                f"New basin rate is per accepted step, trigger rate per attempt.\n\n![rates]({PLOT_NAME})\n")
    atomic_write_text(out_dir / MARKDOWN_NAME, markdown)
    atomic_write_text(out_dir / JSON_NAME, json.dumps(rows, indent=2))
    return {"rows": rows, "json": str(out_dir / JSON_NAME), "markdown": str(out_dir / MARKDOWN_NAME),
            "plot": str(plot), "markdown_text": markdown}


def plot_rates(rows: list[dict], target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actions = [r for r in rows if r["action"] != ALL]
    names = [r["action"] for r in actions]
    x = np.arange(len(names))
    figure, (rates, forces) = plt.subplots(1, 2, figsize=(11, 4))
    for offset, (key, label) in zip((-0.27, 0.0, 0.27), [("rejection_rate", "rejected"),
                                                          ("new_basin_rate", "new basin"),
                                                          ("trigger_rate", "triggered")]):
        rates.bar(x + offset, [r[key] for r in actions], width=0.27, label=label)
    rates.set_xticks(x, names, rotation=30, ha="right")
    rates.set_ylabel("rate")
    rates.set_ylim(0, 1)
    rates.legend()
    for offset, (key, label) in zip((-0.2, 0.2), [("force_pre_mean", "before quench"),
                                                  ("force_post_mean", "after quench")]):
        forces.bar(x + offset, [r[key] or 0.0 for r in actions], width=0.4, label=label)
    forces.set_xticks(x, names, rotation=30, ha="right")
    forces.set_ylabel("mean max atomic force (eV/Å)")
    forces.legend()
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return target
