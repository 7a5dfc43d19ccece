"""Follow pacemaker's log as it is written: training progress and the tool versions.

Line formats of pacemaker 0.4 / tensorpotential 0.6 (logging format `%(asctime)s %(levelname).1s - `):
    ... I - Initial state:#0    (1 evals):        Loss: 9.4267e+00 | RMSE Energy(low): ...
    ... I - Iteration   #12   (21 evals):       Loss: 1.9316e-02 | RMSE Energy(low): ...
every `display_step` iterations a block replaces the one-line form:
    --------------------------------------------FIT STATS--------------------------------------------
    Iteration:  #20  Loss:    Total:  2.4164e-04 (100%)
(test blocks are titled TEST STATS / INIT TEST STATS and are not training iterations), and
    ... I - Target potential shape constructed from dictionary, it contains 15 functions
    ... I - Current basis set size: 15 B-functions      (ladder / upfit only)
    ... I - Extended basis set size: 30 B-functions
    ... I - pacemaker/pyace version: 0.4.0rc1
    ... I - tensorpot_version: 0.6.2.1
"""

from __future__ import annotations

import re

from mlip_autopipec.backends.base import ProgressCallback, report

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_ONE_LINE_ITERATION = re.compile(r"(?:Initial state:|Iteration)\s*#(\d+)\s+\(\d+ evals\):\s+Loss:\s*" + _NUMBER)
_BLOCK_TITLE = re.compile(r"^-{10,}([^-].*?)-{10,}\s*$")
_BLOCK_ITERATION = re.compile(r"^Iteration:\s+#(\d+)\s+Loss:\s+Total:\s+" + _NUMBER)
_TRAIN_BLOCKS = {"INIT STATS", "FIT STATS"}
_TARGET_FUNCTIONS = re.compile(r"Target potential .*contains (\d+) functions")
_CURRENT_FUNCTIONS = re.compile(r"Current basis set size: (\d+) B-functions")
_EXTENDED_FUNCTIONS = re.compile(r"Extended basis set size: (\d+) B-functions")
_VERSIONS = {
    "pacemaker": re.compile(r"pacemaker/pyace version: ([^\s,}]+)"),
    "tensorpotential": re.compile(r"tensorpot_version: ([^\s,}]+)"),
}

# Share of the progress bar the fit itself takes; conversion and active set follow.
FIT_SHARE = 0.95


class PacemakerLogWatcher:
    def __init__(self, max_iterations: int, progress: ProgressCallback | None = None):
        self.max_iterations = max_iterations
        self.progress = progress
        self.versions: dict[str, str] = {}
        self.last_iteration: int | None = None
        self.last_loss: float | None = None
        self._block_title: str | None = None
        self._target_functions: int | None = None
        self._ladder_from: int | None = None  # basis size before the current ladder step
        self._ladder_to: int | None = None
        self._last_reported: tuple[int, int | None] | None = None

    @property
    def version(self) -> str:
        if "pacemaker" not in self.versions:
            return "pacemaker (version not reported)"
        text = f"pacemaker {self.versions['pacemaker']}"
        if "tensorpotential" in self.versions:
            text += f", tensorpotential {self.versions['tensorpotential']}"
        return text

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if match := _ONE_LINE_ITERATION.search(line):
            self._iteration(int(match.group(1)), float(match.group(2)))
        elif match := _BLOCK_TITLE.match(line):
            self._block_title = match.group(1).strip()
        elif match := _BLOCK_ITERATION.match(line):
            if self._block_title in _TRAIN_BLOCKS:
                self._iteration(int(match.group(1)), float(match.group(2)))
        elif match := _TARGET_FUNCTIONS.search(line):
            self._target_functions = int(match.group(1))
        elif match := _CURRENT_FUNCTIONS.search(line):
            self._ladder_from = int(match.group(1))
        elif match := _EXTENDED_FUNCTIONS.search(line):
            self._ladder_to = int(match.group(1))
        else:
            for tool, pattern in _VERSIONS.items():
                if tool not in self.versions and (match := pattern.search(line)):
                    self.versions[tool] = match.group(1)

    def _iteration(self, iteration: int, loss: float) -> None:
        if (iteration, self._ladder_to) == self._last_reported:
            return  # iteration 0 is logged twice: as one line and as the INIT STATS block
        self._last_reported = (iteration, self._ladder_to)
        self.last_iteration, self.last_loss = iteration, loss
        within_step = min(iteration / self.max_iterations, 1.0)
        message = f"iteration {iteration}/{self.max_iterations}, loss {loss:.4e}"
        if self._ladder_to is not None and self._target_functions:
            # Upfitting: each ladder step refits from iteration 0, so progress follows the basis size.
            start = self._ladder_from or 0
            grown = start + (self._ladder_to - start) * within_step
            fraction = grown / self._target_functions
            message = f"basis {self._ladder_to}/{self._target_functions} functions, " + message
        else:
            fraction = within_step
        report(self.progress, iteration, self.max_iterations, FIT_SHARE * min(max(fraction, 0.0), 1.0), message, loss)
