"""What every backend's run.yaml task runner shares: reading and sampling the data splits and the
tqdm progress bar over the training."""

from __future__ import annotations

import contextlib
import random
import sys
from pathlib import Path

from ase import Atoms

from mlip_autopipec.backends.base import DatasetError, ProgressCallback
from mlip_autopipec.config.run_yaml import RunSpec


def read_split(spec: RunSpec, split: str) -> list[Atoms]:
    """Every structure of data.<split>: extxyz (or any ASE format), an ASE LMDB file or a shard directory."""
    from mlip_autopipec.data.ase_lmdb import is_lmdb_path, read_ase_lmdb

    path = Path(getattr(spec.data, split))
    if is_lmdb_path(path):
        frames = list(read_ase_lmdb(path))
    else:
        import ase.io

        try:
            frames = ase.io.read(path, index=":")
        except Exception as exc:
            raise DatasetError(f"data.{split}: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise DatasetError(f"data.{split}: {path} holds no structures")
    return frames


def select_frames(spec: RunSpec, split: str, frames: list[Atoms]) -> list[Atoms]:
    """Explicit indices, else the split's sampling (shuffle with its seed, then max_samples)."""
    indices = spec.indices_for(split)
    where = f"data.{split} ({getattr(spec.data, split)})"
    if indices is not None:
        bad = [index for index in indices if index >= len(frames)]
        if bad:
            raise DatasetError(f"{where} has {len(frames)} structures; indices {bad[:5]} are out of range")
        return [frames[index] for index in indices]
    sampling = spec.sampling_for(split)
    order = list(range(len(frames)))
    if sampling is not None and sampling.shuffle:
        random.Random(sampling.seed).shuffle(order)
    if sampling is not None and sampling.max_samples is not None:
        order = order[:sampling.max_samples]
    return [frames[index] for index in order]


def split_frames(spec: RunSpec, split: str) -> list[Atoms]:
    """data.<split> read and sampled."""
    return select_frames(spec, split, read_split(spec, split))


@contextlib.contextmanager
def progress_bar(spec: RunSpec, progress: ProgressCallback | None, total: int, unit: str, description: str):
    """train.progress_bar (auto: when stderr is a terminal) as a tqdm bar over `total` units, plus `progress`."""
    show = spec.train.progress_bar if spec.train.progress_bar != "auto" else sys.stderr.isatty()
    bar = None
    if show:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=unit, mininterval=spec.train.progress_mininterval, desc=description)
        except ImportError:
            bar = None

    def report(event):
        if bar is not None:
            bar.n = min(event.iteration, total)
            bar.set_postfix_str(event.message[:60], refresh=True)
        if progress is not None:
            progress(event)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
