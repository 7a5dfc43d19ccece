"""Reading fairchem-core 1.10's training log as it streams.

fairchem logs through Python logging, one record per line:
    2026-11-22 08:03:10 .../ocp_trainer.py:194: (INFO): energy_mae: 2.10e-01, forces_mae: ..., loss: ..., lr: ..., epoch: 5.00e-01, step: 1.00e+00
after "Evaluating on val." the validation metrics (4 decimals, no step); and on a resumed run
"Loading checkpoint from: ...". Training lines carry `step`; validation lines carry `epoch` only.
"""

from __future__ import annotations

import math
import re

from mlip_autopipec.backends.base import ProgressCallback, report

_RECORD = re.compile(r"\((?:INFO|WARNING)\): (?P<message>.*)$")
_PAIR = re.compile(r"^(?P<key>[A-Za-z_][\w/]*): (?P<value>[-+0-9.eE]+|nan|inf)$")
_EVALUATING = re.compile(r"^Evaluating on (?P<split>\w+)\.$")
_VERSION = re.compile(r"^\s*version: (?P<version>\d+\.\d+\.\d+\S*)\s*$")


def parse_metrics(message: str) -> dict[str, float] | None:
    """`key: value, key: value, ...` as a dict, or None when the message is anything else."""
    parts = message.split(", ")
    values = {}
    for part in parts:
        match = _PAIR.match(part.strip())
        if match is None:
            return None
        values[match["key"]] = float(match["value"])
    return values or None


class FairChemLogWatcher:
    """Feed it every log line; it keeps the training and validation history and reports progress."""

    def __init__(self, max_epochs: int, progress: ProgressCallback | None = None):
        self.max_epochs = max_epochs
        self.progress = progress
        self.train_history: list[dict[str, float]] = []
        self.val_history: dict[str, list[dict[str, float]]] = {}
        self.version: str | None = None
        self.resumed = False
        self._evaluating: str | None = None

    def feed(self, line: str) -> None:
        if self.version is None:
            version = _VERSION.match(line)
            if version:  # fairchem logs its whole config (cmd.version) when the trainer starts
                self.version = version["version"]
        record = _RECORD.search(line.rstrip("\n"))
        if record is None:
            return
        message = record["message"].strip()
        if message.startswith("Loading checkpoint from:"):
            self.resumed = True
            return
        evaluating = _EVALUATING.match(message)
        if evaluating:
            self._evaluating = evaluating["split"]
            return
        values = parse_metrics(message)
        if values is None:
            return
        if "step" in values:
            self.train_history.append(values)
            self._report(values)
        elif self._evaluating is not None:
            self.val_history.setdefault(self._evaluating, []).append(values)
            self._evaluating = None

    def _report(self, values: dict[str, float]) -> None:
        epoch, loss, step = values.get("epoch", 0.0), values.get("loss"), int(values["step"])
        report(self.progress, step, 0, epoch / self.max_epochs,
               f"epoch {epoch:.2f}/{self.max_epochs}" + (f" step {step} loss {loss:.4g}" if loss is not None else ""),
               loss)

    def final_metrics(self) -> dict[str, float]:
        """The last training line (train_*) and the last validation (val_*), FairChem's units (eV, eV/A)."""
        metrics: dict[str, float] = {}
        if self.train_history:
            last = self.train_history[-1]
            metrics.update({f"train_{key}": value for key, value in last.items() if key not in ("epoch", "step", "lr")})
            metrics["steps"] = last["step"]
            metrics["epochs"] = last.get("epoch", float("nan"))
        for split, history in self.val_history.items():
            metrics.update({f"{split}_{key}": value for key, value in history[-1].items() if key != "epoch"})
        return {key: value for key, value in metrics.items() if not math.isnan(value)}
