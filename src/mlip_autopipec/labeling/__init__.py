"""Labelling: reference energies, forces and stresses from any ASE calculator, one worker process
per structure (a crashing or hanging DFT code costs one structure, never the campaign)."""

from mlip_autopipec.labeling.batch import (DEFAULT_TIMEOUT_S, Attempt, LabelingRun, LabelReport, check_settings,
                                           fan_out, job_root, label_claimed, label_pending)
from mlip_autopipec.labeling.job import CancelFile, JobResult, LabelingError, label_structure

__all__ = ["DEFAULT_TIMEOUT_S", "Attempt", "CancelFile", "JobResult", "LabelReport", "LabelingError",
           "LabelingRun", "check_settings", "fan_out", "job_root", "label_claimed", "label_pending",
           "label_structure"]
