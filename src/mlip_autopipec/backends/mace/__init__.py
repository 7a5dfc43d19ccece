"""The MACE backend: the real `mace_run_train` CLI in a subprocess (train, fine-tune from a local
model, resume from a checkpoint, committees), metrics from MACE's own error tables, ASE calculators
with committee deviations, and evaluate / infer / export over trained models.

Importing this package loads neither torch nor MACE; they load when a model is first used.
"""

from mlip_autopipec.backends.mace.calculator import (
    CommitteeMACECalculator,
    committee_deviations,
    make_calculator,
    make_mace_calculator,
    model_paths_of,
)
from mlip_autopipec.backends.mace.trainer import MaceTrainer

__all__ = ["CommitteeMACECalculator", "MaceTrainer", "committee_deviations", "make_calculator",
           "make_mace_calculator", "model_paths_of"]
