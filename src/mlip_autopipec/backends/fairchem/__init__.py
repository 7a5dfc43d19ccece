"""The FairChem backend: EquiformerV2 and GemNet-OC trained by fairchem-core 1.10's own
`fairchem --mode train` in a separate interpreter (torch ~2.4, numpy <2: it cannot share the main
environment), ASE LMDB datasets, metrics from its log, evaluate / infer / export, and an ASE
calculator that talks to a model server in that interpreter.

Importing this package loads neither torch nor fairchem (they live in the other interpreter).
"""

from mlip_autopipec.backends.fairchem.calculator import FairChemCalculator, make_calculator
from mlip_autopipec.backends.fairchem.config import FAIRCHEM_BACKENDS, FairChemConfig
from mlip_autopipec.backends.fairchem.trainer import EquiformerV2Trainer, FairChemTrainer, GemNetOCTrainer

__all__ = ["FAIRCHEM_BACKENDS", "EquiformerV2Trainer", "FairChemCalculator", "FairChemConfig", "FairChemTrainer",
           "GemNetOCTrainer", "make_calculator"]
