"""The structures a campaign starts from: seeds, generation 0's perturbed copies, the held-out set."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.campaign.config import BootstrapSettings, LabelingSettings, SeedSpec, ValidationSettings
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.exploration.md import WalkerSettings
from mlip_autopipec.labeling.job import LabelingError
from mlip_autopipec.labeling.md_job import label_by_md


def build_seeds(specs: list[SeedSpec], seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    structures = []
    for spec in specs:
        if spec.file is not None:
            structures.append(ase.io.read(spec.file))
            continue
        atoms = bulk(spec.bulk, spec.crystalstructure, a=spec.a, cubic=spec.crystalstructure in {"fcc", "bcc"})
        atoms = atoms.repeat(spec.repeat)
        free = rng.permutation(len(atoms))
        start = 0
        for element, fraction in sorted(spec.substitute.items()):
            count = int(round(fraction * len(atoms)))
            atoms.symbols[free[start:start + count]] = element
            start += count
        structures.append(atoms)
    return structures


def perturbed_copies(seeds: list[Atoms], settings: BootstrapSettings, seed: int) -> list[Atoms]:
    """Rattled, isotropically strained copies of each seed: a spread generation 0 can fit."""
    rng = np.random.default_rng(seed)
    copies = []
    for structure in seeds:
        for _ in range(settings.per_seed):
            atoms = structure.copy()
            strain = 1.0 + rng.uniform(-settings.max_strain, settings.max_strain)
            atoms.set_cell(atoms.cell * strain, scale_atoms=True)
            atoms.positions += rng.normal(0.0, settings.rattle_stdev, atoms.positions.shape)
            copies.append(atoms)
    return copies


@dataclass
class HeldOutMd:
    """The held-out set from MD with the labeler: labelled snapshots, and what went wrong."""

    frames: list[LabelledFrame] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # MD runs that failed every attempt, with why
    rejected: list[str] = field(default_factory=list)  # snapshots whose labels are unusable
    runs: int = 0


def held_out_md(seeds: list[Atoms], settings: ValidationSettings, labeling: LabelingSettings, seed: int,
                workdir: Path, progress: Callable[[str], None] | None = None) -> HeldOutMd:
    """Snapshots of MD run with the labeler itself: configurations the campaign should learn,
    drawn from trajectories that exploration never sees (own random seeds).

    Every run is a labelling job (labeling/md_job.py): its own worker process, `labeling.workers`
    at a time, killed after `validation.md_timeout_s`, retried up to `labeling.max_attempts`; a run
    that fails every attempt is reported in `failures`, the others still count. The snapshots keep
    the labeler's energy and forces from the MD: they are not labelled a second time. `progress`
    hears about every recorded MD step while a run goes and every finished run."""
    spec = md_labeler(labeling.calculator)
    record_every = max(1, settings.md_steps // settings.snapshots_per_run)
    timeout_s = settings.md_timeout_s or labeling.timeout_s * (settings.md_steps + 1)
    runs = []
    for seed_index, structure in enumerate(seeds):
        for t_index, temperature in enumerate(settings.md_temperatures_K):
            walker = WalkerSettings(temperature_K=temperature, steps=settings.md_steps,
                                    record_every=record_every, uncertainty_upper=None,
                                    seed=10_000 + 100 * seed + 10 * seed_index + t_index)
            runs.append((f"seed {seed_index} at {temperature:g} K", structure, walker,
                         workdir / f"held-out-{seed_index}-{t_index}"))
    result = HeldOutMd(runs=len(runs))
    lock = threading.Lock()

    def run(name: str, structure: Atoms, walker: WalkerSettings, job_dir: Path):
        def on_step(done: int, total: int) -> None:
            if progress is not None:
                progress(f"held-out MD {name}: step {done}/{total}")

        try:
            labels = label_by_md(structure, spec, walker, job_dir, timeout_s, max_attempts=labeling.max_attempts,
                                 on_step=on_step)
        except LabelingError as exc:
            return name, None, str(exc)
        return name, labels, None

    with ThreadPoolExecutor(max_workers=labeling.workers, thread_name_prefix="held-out-md") as pool:
        for done, future in enumerate(as_completed([pool.submit(run, *job) for job in runs]), start=1):
            name, labels, error = future.result()
            with lock:
                if labels is None:
                    result.failures.append(f"{name}: {error}")
                    message = f"held-out MD {done}/{len(runs)}: {name} FAILED: {error.splitlines()[0][:300]}"
                else:
                    result.frames.extend(labels.frames)
                    result.rejected.extend(labels.rejected)
                    message = (f"held-out MD {done}/{len(runs)}: {name}: {len(labels.frames)} labelled snapshots"
                               + (f" (after {labels.attempts} attempts)" if labels.attempts > 1 else ""))
            if progress is not None:
                progress(message)
    return result


def md_labeler(spec: CalculatorSpec) -> CalculatorSpec:
    """The labeler as it runs MD: GPAW without its default symmetry reduction, which raises
    SymmetryBrokenError as soon as the atoms move off the starting symmetry."""
    if spec.import_path == "gpaw:GPAW" and "symmetry" not in spec.kwargs:
        return spec.model_copy(update={"kwargs": {**spec.kwargs, "symmetry": "off"}})
    return spec
