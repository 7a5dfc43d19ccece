"""Import pyace without its side effect on logging.

pyace (and pyace.aceselect) call logging.basicConfig and set the root logger to INFO at import,
which floods every host application's log with third-party INFO lines (each HTTP request of a
Prefect client, for one). We import it once and put the root logger back as it was.
"""

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
