"""Export labelled frames as training-ready files, split into train and test without leakage.

Formats (file names in `manifest.FILE_NAMES`):
  extxyz     ASE-standard `energy` / `forces` / `stress` properties
  pacemaker  Pacemaker's pickled gzip DataFrame (`ase_atoms`, `energy`, `energy_corrected`, `forces`)
  mace       extxyz with MACE's default keys `REF_energy`, `REF_forces`, `REF_stress`

The split is by group (frames derived from one parent stay together) and by a keyed hash of
each group's key, so it is deterministic for a seed and independent of row order. Files are
written byte-for-byte reproducibly (gzip without a timestamp), so their digests can drive caching.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.manifest import (
    FILE_NAMES,
    MANIFEST_NAME,
    DatasetManifest,
    ExportFormat,
    ManifestFile,
    Split,
)
from mlip_autopipec.files import sha256_file

ALL_FORMATS: tuple[ExportFormat, ...] = ("extxyz", "pacemaker", "mace")


@dataclass
class ExportItem:
    frame: LabelledFrame
    group: str  # frames with the same group key land on the same side of the split


def split_by_group(items: Sequence[ExportItem], test_fraction: float, seed: int) -> dict[Split, list[int]]:
    """Indices of `items` for train and test; whole groups move, ordered by a seeded hash.

    A group never goes to test if it holds the last training atoms of an element: a rare element
    (a dopant in one structure) must be trained on, not only tested."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    members: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        members[item.group].append(index)
    ranked = sorted(members, key=lambda key: hashlib.sha256(f"{seed}:{key}".encode()).hexdigest())
    elements_of = {key: Counter(symbol for i in indices for symbol in items[i].frame.atoms.get_chemical_symbols())
                   for key, indices in members.items()}
    training_atoms = sum(elements_of.values(), Counter())

    target = int(round(test_fraction * len(items)))
    if test_fraction > 0 and len(members) > 1:
        target = max(target, 1)
    test: list[int] = []
    for key in ranked[:-1]:  # the last-ranked group always trains: train is never empty
        if len(test) >= target:
            break
        if any(training_atoms[element] <= count for element, count in elements_of[key].items()):
            continue  # its elements would be missing from train
        training_atoms -= elements_of[key]
        test.extend(members[key])
    test_set = set(test)
    return {
        "train": [i for i in range(len(items)) if i not in test_set],
        "test": sorted(test),
    }


def export_dataset(
    items: Sequence[ExportItem],
    out_dir: str | os.PathLike,
    test_fraction: float = 0.1,
    seed: int = 0,
    formats: Sequence[ExportFormat] = ALL_FORMATS,
    source: dict | None = None,
    splits: dict[Split, list[int]] | None = None,
    overwrite: bool = False,
) -> DatasetManifest:
    """Write the split in every requested format plus `manifest.json`; return the manifest.

    `splits` (indices of `items` per split) replaces the seeded split by group when the caller
    already knows which frames are for testing (run.yaml's data.train / data.test). An `out_dir`
    holding files an earlier export did not write is refused (ExportTargetError) unless `overwrite`;
    the files of an earlier export there are replaced, and those it no longer writes removed."""
    if not items:
        raise ValueError("nothing to export: the dataset is empty")
    unknown = sorted(set(formats) - set(ALL_FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(ALL_FORMATS)}")

    out_dir = Path(out_dir)
    earlier = check_export_target(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    if splits is None:
        splits = split_by_group(items, test_fraction, seed)
    entries: list[ManifestFile] = []
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for split, indices in splits.items():
            if not indices:
                continue
            frames = [items[i].frame for i in indices]
            n_atoms = sum(len(frame.atoms) for frame in frames)
            for format_ in formats:
                name = FILE_NAMES[format_].format(split=split)
                _WRITERS[format_](frames, staging / name)
                entries.append(ManifestFile(path=name, format=format_, split=split,
                                            frames=len(frames), atoms=n_atoms,
                                            sha256=sha256_file(staging / name)))
        for entry in entries:
            os.replace(staging / entry.path, out_dir / entry.path)
        for name in earlier - {entry.path for entry in entries}:  # an earlier export's, not rewritten
            (out_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    elements = sorted({symbol for item in items for symbol in item.frame.atoms.get_chemical_symbols()})
    manifest = DatasetManifest(
        seed=seed, test_fraction=test_fraction, elements=elements,
        counts={split: len(indices) for split, indices in splits.items()},
        files=entries, source={key: value for key, value in (source or {}).items()},
    ).finalize()
    manifest.write(out_dir)
    return manifest


class ExportTargetError(ValueError):
    """The export directory holds files an export did not write."""


def check_export_target(out_dir: str | os.PathLike, overwrite: bool = False) -> set[str]:
    """Refuse an `out_dir` holding files no export wrote (a user's own files, an unreadable
    manifest.json) unless `overwrite`; return the data files an earlier export listed there."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return set()
    if not out_dir.is_dir():
        raise ExportTargetError(f"{out_dir}: --out is a file, not a directory")
    earlier: set[str] = set()
    ours = {MANIFEST_NAME}
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            earlier = {entry.path for entry in DatasetManifest.load(manifest_path).files}
        except (ValueError, OSError):
            ours = set()  # a manifest.json the export did not write: the user's own
    foreign = sorted(path.name for path in out_dir.iterdir()
                     if path.name not in ours | earlier and not path.name.startswith(".export-"))
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ExportTargetError(f"{out_dir}: holds files this export did not write ({shown}); choose an empty "
                                "or new directory, or pass --overwrite to write beside them (files named "
                                f"{MANIFEST_NAME}, train.*, test.* are replaced)")
    return {name for name in earlier if "/" not in name and (out_dir / name).is_file()}


def _write_extxyz(frames: Sequence[LabelledFrame], path: Path) -> None:
    """The bytes ase writes for `frame.to_atoms()`, with the labels placed where ase's writer would
    move a calculator's results (info, arrays; stress as 3x3): that writer copies each frame's atoms
    to do so, and a SinglePointCalculator copies them once more; here they are copied once."""
    images = []
    for frame in frames:
        atoms = frame.atoms.copy()
        if frame.energy_corrected is not None:
            atoms.info["energy_corrected"] = frame.energy_corrected
        if frame.energy is not None:
            atoms.info["energy"] = frame.energy
        if frame.stress is not None:
            stress = np.array(frame.stress, dtype=float)
            atoms.info["stress"] = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress
        if frame.forces is not None:
            atoms.arrays["forces"] = np.array(frame.forces, dtype=float)
        images.append(atoms)
    ase.io.write(path, images, format="extxyz", write_results=False)


def _write_mace_extxyz(frames: Sequence[LabelledFrame], path: Path) -> None:
    images = []
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.info["REF_energy"] = frame.energy
        atoms.arrays["REF_forces"] = np.asarray(frame.forces, dtype=float)
        if frame.stress is not None:
            atoms.info["REF_stress"] = _voigt(frame.stress)
        images.append(atoms)
    ase.io.write(path, images, format="extxyz", write_results=False)  # no calculator: ase need not copy again


def _write_pacemaker_dataframe(frames: Sequence[LabelledFrame], path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame({
        "ase_atoms": [_geometry_only(frame.atoms) for frame in frames],
        "energy": [float(frame.energy) for frame in frames],
        "energy_corrected": [float(frame.energy if frame.energy_corrected is None
                                   else frame.energy_corrected) for frame in frames],
        "forces": [_for_pickle(frame.forces, float) for frame in frames],
    })
    # mtime=0: the same data always gives the same bytes, hence the same digest.
    table.to_pickle(path, compression={"method": "gzip", "mtime": 0}, protocol=4)


def _geometry_only(atoms: Atoms) -> Atoms:
    copy = Atoms(numbers=_for_pickle(atoms.numbers, int), positions=_for_pickle(atoms.positions, float),
                 cell=_for_pickle(atoms.cell.array, float), pbc=atoms.pbc)
    copy.calc = None
    return copy


def _for_pickle(array, dtype: type) -> np.ndarray:
    """A C-ordered copy with numpy's own dtype object. A pickle records an array's memory order, and
    a dtype object other than the last one it wrote in full (one unpickled from a user's DataFrame)
    again: equal arrays from another reader would give other bytes, hence another dataset digest."""
    return np.asarray(array).astype(dtype, order="C")


def _voigt(stress: np.ndarray) -> np.ndarray:
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return np.array([stress[0, 0], stress[1, 1], stress[2, 2],
                         stress[1, 2], stress[0, 2], stress[0, 1]])
    return stress


_WRITERS = {
    "extxyz": _write_extxyz,
    "pacemaker": _write_pacemaker_dataframe,
    "mace": _write_mace_extxyz,
}
