"""Digest-keyed caching whose hits are checked against the files they point to.

Task inputs are paths plus content digests, so INPUTS + TASK_SOURCE changes exactly when the data,
the config or the starting potential does. A cached result is only a pointer to files, though: if
someone deleted them (a run directory removed by hand), the task must run again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE

DIGEST_CACHE = INPUTS + TASK_SOURCE


def run_with_outputs(task, outputs: Callable[[dict], list[str]], *args, **kwargs) -> dict:
    """Call `task`; if its (possibly cached) result names files that no longer exist, run it again
    with a refreshed cache."""
    result = task(*args, **kwargs)
    if all(Path(path).exists() for path in outputs(result)):
        return result
    return task.with_options(refresh_cache=True)(*args, **kwargs)
