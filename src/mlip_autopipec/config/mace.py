"""MaceConfig lives next to its backend (backends/mace/config.py); this module keeps the import path."""

from mlip_autopipec.backends.mace.config import RESERVED_FLAGS, MaceConfig

__all__ = ["RESERVED_FLAGS", "MaceConfig"]
