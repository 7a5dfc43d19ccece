"""Reading a user's pickled Pacemaker DataFrame without running code from it.

A pickle names the functions and classes it calls while loading; a crafted one calls os.system.
`load_dataframe` unpickles with an allow-list: the pandas, numpy and ASE types a Pacemaker
DataFrame holds (DataFrame, its indexes and blocks, ndarrays, Atoms, Cell, SinglePointCalculator,
constraints) and plain builtins. Anything else is refused before it is called, naming it
(UnsafePickle), so a payload never runs. Pickles the project writes itself are read as usual.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

_ALLOWED = {
    "builtins": {"slice", "complex", "set", "frozenset", "bytearray", "range", "dict", "list", "tuple",
                 "object", "int", "float", "str", "bytes", "bool"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "collections": {"OrderedDict", "defaultdict"},
    "numpy": {"dtype", "ndarray", "float64", "float32", "int64", "int32", "bool_"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
    "ase.atoms": {"Atoms"},
    "ase.atom": {"Atom"},
    "ase.cell": {"Cell"},
    "ase.calculators.calculator": {"Parameters"},
    "ase.calculators.singlepoint": {"SinglePointCalculator", "SinglePointDFTCalculator",
                                    "SinglePointKPoint", "SinglePointKPoints"},
    "pyace.preparedata": {"DataFrameWithMetadata"},  # pacemaker's own DataFrame subclass
    "pandas.core.frame": {"DataFrame"},
    "pandas.core.series": {"Series"},
}
# Every name in these modules is allowed: pandas' private (un)pickling helpers move between versions.
_ALLOWED_MODULES = ("pandas._libs.internals", "pandas.core.internals.managers", "pandas.core.internals.blocks",
                    "pandas.core.internals", "pandas.core.indexes.base", "pandas.core.indexes.range",
                    "pandas.core.indexes.multi", "numpy.dtypes", "ase.constraints")


class UnsafePickle(pickle.UnpicklingError):
    """The pickle wants to call something a Pacemaker DataFrame never needs."""


# ASE pickles a calculator's deprecated bound method as getattr(calc, name); nothing else may be
# looked up: any other method (ndarray.tofile, DataFrame.to_pickle, Atoms.write) would write files.
_CALCULATOR_ATTRIBUTES = {"_deprecated_get_spin_polarized"}


def _safe_getattr(obj, name: str, *default):
    if name not in _CALCULATOR_ATTRIBUTES or not type(obj).__module__.startswith("ase.calculators."):
        raise UnsafePickle(f"refused getattr({type(obj).__name__}, {name!r}): a pickled DataFrame never "
                           "needs it (nothing in the file was run)")
    return getattr(obj, name, *default)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("builtins", "getattr"):
            return _safe_getattr
        if name in _ALLOWED.get(module, ()) or (module in _ALLOWED_MODULES and not name.startswith("__")):
            return super().find_class(module, name)
        raise UnsafePickle(f"refused to load {module}.{name}: only pandas, numpy and ASE types are read "
                           "from a pickled DataFrame (nothing in the file was run)")


def load_dataframe(path: str | os.PathLike, compression: str | None):
    """Unpickle `path` (gzip-compressed when `compression == "gzip"`) with the allow-list."""
    opener = gzip.open if compression == "gzip" else open
    with opener(Path(path), "rb") as handle:
        return _RestrictedUnpickler(handle).load()


__all__ = ["UnsafePickle", "load_dataframe"]
