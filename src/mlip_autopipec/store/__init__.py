"""The structure store (ase.db) and the fingerprint of a structure, which keeps it free of duplicates."""

from mlip_autopipec.store.fingerprint import fingerprint
from mlip_autopipec.store.structure_store import (
    AddOutcome,
    NewStructure,
    Status,
    StatusError,
    StoredStructure,
    StoreError,
    StructureStore,
    check_writable,
)

__all__ = ["AddOutcome", "NewStructure", "Status", "StatusError", "StoredStructure", "StoreError",
           "StructureStore", "check_writable", "fingerprint"]
