"""Import pyace without its side effect on logging: pyace calls logging.basicConfig and sets the root
logger to INFO at import, flooding the host application's log; the root logger is put back."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType


def import_pyace(module: str = "pyace") -> ModuleType:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return importlib.import_module(module)
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
