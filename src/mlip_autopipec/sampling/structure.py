"""The walker's structure: reading it (JSON or any ASE file), which atoms may move, the npz store.

A structure JSON holds `numbers` (or `symbols`), `positions`, optional `cell`, `pbc`, `fixed`
(indices, or one boolean per atom) and `tags`. From an ASE file, `FixAtoms` constraints mark the
fixed atoms and the file's tags are kept. Actions move only the movable (not fixed) atoms.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from mlip_autopipec.files import atomic_path


def read_structure(path: str | Path) -> Atoms:
    """The structure with a `FixAtoms` constraint on its fixed atoms; errors name file and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure {path} does not exist")
    if path.suffix != ".json":
        try:
            atoms = ase.io.read(str(path), index=0)
        except Exception as exc:  # ASE raises many types for unreadable files
            raise ValueError(f"{path}: ASE cannot read a structure from it ({exc})") from exc
        fixed = fixed_mask(atoms)
        return with_fixed(atoms, fixed)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return structure_from_json(record, str(path))


def structure_from_json(record: dict, where: str = "structure") -> Atoms:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with numbers/positions/cell/fixed/tags")
    if "positions" not in record or not ({"numbers", "symbols"} & record.keys()):
        raise ValueError(f"{where}: needs 'positions' and 'numbers' (or 'symbols')")
    try:
        positions = np.asarray(record["positions"], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: field 'positions' is not a list of 3-vectors ({exc})") from None
    if positions.ndim != 2 or positions.shape[1] != 3 or not np.isfinite(positions).all():
        raise ValueError(f"{where}: field 'positions' must be finite [x, y, z] rows, got shape {positions.shape}")
    n = len(positions)
    species_field = "numbers" if "numbers" in record else "symbols"
    if len(record[species_field]) != n:
        raise ValueError(f"{where}: field '{species_field}' has {len(record[species_field])} entries for {n} positions")
    cell = record.get("cell")
    pbc = record.get("pbc", cell is not None)
    try:
        atoms = Atoms(**{species_field: record[species_field]}, positions=positions, cell=cell, pbc=pbc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: fields '{species_field}'/'cell'/'pbc' are not a valid structure ({exc})") from None
    if "tags" in record:
        tags = np.asarray(record["tags"])
        if tags.shape != (n,) or not np.issubdtype(tags.dtype, np.integer):
            raise ValueError(f"{where}: field 'tags' must hold one integer per atom ({n})")
        atoms.set_tags(tags)
    fixed = np.zeros(n, dtype=bool)
    if record.get("fixed") is not None:
        raw = np.asarray(record["fixed"])
        if raw.dtype == bool and raw.shape == (n,):
            fixed = raw
        elif raw.size == 0 or (np.issubdtype(raw.dtype, np.integer) and raw.ndim == 1
                               and raw.min() >= 0 and raw.max() < n):
            fixed[raw.astype(int)] = True
        else:
            raise ValueError(f"{where}: field 'fixed' must be atom indices below {n} or one boolean per atom")
    return with_fixed(atoms, fixed)


def fixed_mask(atoms: Atoms) -> np.ndarray:
    fixed = np.zeros(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            fixed[constraint.index] = True
    return fixed


def with_fixed(atoms: Atoms, fixed: np.ndarray) -> Atoms:
    """A calculator-free copy whose only constraint is FixAtoms on `fixed`."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                tags=atoms.get_tags())
    if fixed.any():
        out.set_constraint(FixAtoms(mask=fixed))
    return out


def structure_to_json(atoms: Atoms) -> dict:
    return {"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(), "pbc": [bool(p) for p in atoms.pbc],
            "fixed": np.flatnonzero(fixed_mask(atoms)).tolist(), "tags": atoms.get_tags().tolist()}


def save_npz(path: str | Path, atoms: Atoms, **arrays: np.ndarray) -> Path:
    """One structure (plus named per-step arrays such as forces) written atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                 pbc=atoms.pbc, tags=atoms.get_tags(), fixed=fixed_mask(atoms),
                 **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    return Path(path)


def load_npz(path: str | Path, prefix: str = "") -> Atoms:
    """The structure in `path`; `prefix="quenched_"` reads the quenched positions stored beside it."""
    with np.load(path) as data:
        atoms = Atoms(numbers=data["numbers"], positions=data[f"{prefix}positions"], cell=data["cell"],
                      pbc=data["pbc"], tags=data["tags"])
        return with_fixed(atoms, data["fixed"].astype(bool))
