"""Follow `mace_run_train`'s output as it is written: epochs, the version, checkpoints it loaded.

Line formats of mace-torch 0.3.16 (logging format `%(asctime)s.%(msecs)03d %(levelname)s: `):
    2026-11-22 04:48:33.689 INFO: MACE version: 0.3.16
    ... INFO: Loading checkpoint: ./checkpoints/mace_run-1_epoch-0.pt
    ... INFO: ===========TRAINING===========
    ... INFO: Initial: head: Default, loss=0.00031303, RMSE_E_per_atom=    3.80 meV, RMSE_F=    3.52 meV / A
    ... INFO: Epoch 0: head: Default, loss=0.00031309, RMSE_E_per_atom=    3.76 meV, RMSE_F=    3.52 meV / A
    ... INFO: Training complete
    ... INFO: ===========RESULTS===========
    ... INFO: Loaded Stage one model from epoch 0 for evaluation
Epoch indices start at 0. The error columns follow --error_table (RMSE_E_per_atom, MAE_E_per_atom,
RMSE_E, MAE_E; forces RMSE_F or MAE_F), all in meV. A `Loading checkpoint` line before TRAINING
is a restart (--restart_latest): training continues at that checkpoint's epoch.
"""

from __future__ import annotations

import math
import re

from mlip_autopipec.backends.base import ProgressCallback, report

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_EPOCH = re.compile(r"INFO: (Initial|Epoch (\d+)): head: (\S+), loss=\s*" + _NUMBER + r"(.*)$")
_ERROR = re.compile(r"(\w+)=\s*" + _NUMBER)
_VERSION = re.compile(r"MACE version: (\S+)")
_LOADING_CHECKPOINT = re.compile(r"Loading checkpoint: (\S+_epoch-(\d+)(?:_swa)?\.pt)")
_LOADED_FOR_EVALUATION = re.compile(r"Loaded Stage (one|two) model from epoch (\d+) for evaluation")
_TRAINING_STARTS = "===========TRAINING==========="

# Share of one model's progress bar its epochs take; saving, compiling and evaluating follow.
TRAIN_SHARE = 0.9


class MaceLogWatcher:
    """Feed it every output line of one `mace_run_train` run."""

    def __init__(self, epochs: int, progress: ProgressCallback | None = None, member: int = 0,
                 committee_size: int = 1):
        self.epochs = epochs
        self.progress = progress
        self.member = member
        self.committee_size = committee_size
        self.version: str | None = None
        self.restarted_from_epoch: int | None = None  # a checkpoint loaded before training started
        self.initial_validation: dict[str, float] | None = None  # errors before any training step
        self.epochs_seen: list[int] = []
        self.last_loss: float | None = None
        self.best_epoch: int | None = None  # the epoch MACE saved as the final model
        self._training = False

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if match := _EPOCH.search(line):
            values = {"loss": float(match.group(4))}
            values.update({key: float(value) for key, value in _ERROR.findall(match.group(5))})
            if match.group(2) is None:
                self.initial_validation = values
            else:
                self._epoch(int(match.group(2)), values)
        elif _TRAINING_STARTS in line:
            self._training = True
        elif match := _LOADING_CHECKPOINT.search(line):
            if not self._training and self.restarted_from_epoch is None:
                self.restarted_from_epoch = int(match.group(2))
        elif match := _LOADED_FOR_EVALUATION.search(line):
            self.best_epoch = int(match.group(2))
        elif self.version is None and (match := _VERSION.search(line)):
            self.version = match.group(1)

    @property
    def epochs_done(self) -> int:
        return self.epochs_seen[-1] + 1 if self.epochs_seen else 0

    def fraction(self, within_member: float) -> float:
        return (self.member + min(max(within_member, 0.0), 1.0)) / self.committee_size

    def _epoch(self, epoch: int, values: dict[str, float]) -> None:
        if self.epochs_seen and self.epochs_seen[-1] == epoch:
            return  # one line per validation head; report the epoch once
        self.epochs_seen.append(epoch)
        loss = values["loss"]
        self.last_loss = None if math.isnan(loss) else loss
        errors = ", ".join(f"{key} {value:.2f}" for key, value in values.items() if key != "loss")
        member = f"model {self.member + 1}/{self.committee_size}: " if self.committee_size > 1 else ""
        report(self.progress, epoch + 1, self.epochs, self.fraction(TRAIN_SHARE * (epoch + 1) / self.epochs),
               f"{member}epoch {epoch + 1}/{self.epochs}, validation loss {loss:.4e}"
               + (f", {errors} meV" if errors else ""), loss)
