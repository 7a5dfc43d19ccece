"""`run_task(spec)`: one unified run.yaml task, handed to the backend that runs it."""

from __future__ import annotations

import importlib

from mlip_autopipec.backends.base import ProgressCallback
from mlip_autopipec.config.run_yaml import RunSpec

# Backend name -> "module:function" running its run.yaml tasks; modules load lazily (TensorFlow, torch).
RUNNERS = {
    "pacemaker": "mlip_autopipec.backends.pacemaker.tasks:run_task",
    "mace": "mlip_autopipec.backends.mace.tasks:run_task",
    "equiformer_v2": "mlip_autopipec.backends.fairchem.tasks:run_task",
    "gemnet_oc": "mlip_autopipec.backends.fairchem.tasks:run_task",
}


def run_task(spec: RunSpec, progress: ProgressCallback | None = None) -> dict:
    """Run `spec` with its backend; the summary names every output (run_dir, artifacts, metrics)."""
    if spec.backend not in RUNNERS:
        raise NotImplementedError(f"backend {spec.backend!r} has no run.yaml task runner here "
                                  f"(available: {sorted(RUNNERS)})")
    module_name, function_name = RUNNERS[spec.backend].split(":")
    return getattr(importlib.import_module(module_name), function_name)(spec, progress)
