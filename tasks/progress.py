"""Training progress, visible while it runs: log lines in the terminal and a Prefect progress artifact."""

from __future__ import annotations

import time

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from mlip_autopipec.backends import TrainingProgress


class PrefectProgress:
    """A ProgressCallback that throttles updates: at most one every `interval` seconds."""

    def __init__(self, key: str, description: str, interval: float = 2.0):
        self._artifact = create_progress_artifact(0.0, key=key, description=description)
        self._interval = interval
        self._last = 0.0
        self._logger = get_run_logger()

    def __call__(self, progress: TrainingProgress) -> None:
        now = time.monotonic()
        finished = progress.fraction >= 1.0
        if not finished and now - self._last < self._interval:
            return
        self._last = now
        update_progress_artifact(self._artifact, 100.0 * min(progress.fraction, 1.0))
        self._logger.info(f"{progress.message} ({100 * min(progress.fraction, 1.0):.0f}%)")
