"""Digest-keyed caching whose hits are checked against the files they point to.

Task inputs are paths plus content digests, so INPUTS + TASK_SOURCE changes exactly when the data,
the config or the starting potential does. RESULT_TYPE adds the schema of the task's return type:
a result persisted under another shape of it (a dict from before results were typed, a model that
has since gained a field) is never loaded as the new type. A cached result is only a pointer to
files, though: if someone deleted them (a run directory removed by hand), the task must run again.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects
from pydantic import TypeAdapter


@dataclass
class ResultType(CachePolicy):
    """Keys on the JSON schema of the task function's return annotation: its shape only, so that
    rewording a docstring or a field's description does not throw cached results away."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        if not task_ctx:
            return None
        returns = typing.get_type_hints(task_ctx.task.fn).get("return", Any)
        return hash_objects(_shape(TypeAdapter(returns).json_schema()), raise_on_failure=True)


def _shape(schema):
    """A JSON schema without its prose (descriptions and titles)."""
    if isinstance(schema, dict):
        return {key: _shape(value) for key, value in schema.items()
                if key not in ("description", "title") or not isinstance(value, str)}
    if isinstance(schema, list):
        return [_shape(value) for value in schema]
    return schema


RESULT_TYPE = ResultType()
DIGEST_CACHE = INPUTS + TASK_SOURCE + RESULT_TYPE


def run_with_outputs(task, outputs: Callable[[Any], list[str]], *args, **kwargs):
    """Call `task`; if its (possibly cached) result names files that no longer exist, run it again
    with a refreshed cache."""
    result = task(*args, **kwargs)
    if all(Path(path).exists() for path in outputs(result)):
        return result
    return task.with_options(refresh_cache=True)(*args, **kwargs)
