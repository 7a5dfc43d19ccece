"""Labelling: reference energies, forces and stresses from any ASE calculator, one worker process
per structure (a crashing or hanging DFT code costs one structure, never the campaign); locally
(batch.py) or as SLURM batch jobs (slurm.py).

The names below are imported on first use: `python -m mlip_autopipec.labeling.worker` must not
import the store and data modules, which set up ASE's MPI communicator before a calculator under
an MPI launcher (GPAW) can set up its own.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "batch": ["DEFAULT_TIMEOUT_S", "Attempt", "LabelingRun", "LabelReport", "check_settings", "fan_out", "job_root",
              "label_claimed", "label_pending"],
    "job": ["CancelFile", "JobResult", "LabelingError", "label_structure"],
    "slurm": ["label_pending_slurm"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
