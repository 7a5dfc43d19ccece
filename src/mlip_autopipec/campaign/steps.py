"""The campaign's own steps, as plain library calls (tasks/campaign.py wraps each one):
prepare the starting structures, explore with a generation's potential, select and queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
from ase import Atoms

from mlip_autopipec.backends import PotentialArtifact, get_trainer
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import gamma_statistics
from mlip_autopipec.campaign.results import ExplorationSummary, Preparation, QueueSummary
from mlip_autopipec.campaign.structures import build_seeds, held_out_md, perturbed_copies
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.exploration.md import WalkerResult, WalkerSettings, run_walker
from mlip_autopipec.files import atomic_path
from mlip_autopipec.generations import find_matching
from mlip_autopipec.outbox import Candidate, process_outbox
from mlip_autopipec.selection.committee import TrustLevels, classify, select_candidates
from mlip_autopipec.selection.gamma import (
    frames_with_species,
    gamma_candidates,
    select_d_optimal,
    select_top_gamma,
)
from mlip_autopipec.store import NewStructure, Status, StructureStore


class HeldOutError(RuntimeError):
    """No held-out set could be made: every MD run with the labeler failed."""


def prepare(config: CampaignConfig, progress: Callable[[str], None] | None = None) -> Preparation:
    """Queue generation 0's perturbed seeds and make the held-out set; idempotent (fingerprints).
    `held_out_problems` lists held-out MD runs that failed every attempt and rejected snapshots."""
    held_out_problems: list[str] = []
    seeds = build_seeds(config.seeds, config.seed)
    store = StructureStore(config.store_url, campaign=config.campaign)
    bootstrap = store.add([_pending(atoms, "bootstrap", 0)
                           for atoms in perturbed_copies(seeds, config.bootstrap, config.seed)])
    if config.bootstrap.pool:
        from mlip_autopipec.selection.direct import select_initial_training_set

        picked = select_initial_training_set(config.bootstrap.pool, config.bootstrap.pool_pick, seed=config.seed)
        bootstrap += store.add([_pending(atoms, "direct", 0, origin=atoms.info.get("direct_source"))
                                for atoms in picked])
    held_out = StructureStore(config.store_url, campaign=config.held_out_campaign)
    if config.validation.data is not None:
        frames = [item for _, item in read_labelled_frames(config.validation.data)
                  if isinstance(item, LabelledFrame)]
        added = held_out.add([NewStructure(frame, "held-out") for frame in frames])
    elif not held_out.status_counts()["completed"]:
        spec = config.labeling.calculator
        md = held_out_md(seeds, config.validation, config.labeling, config.seed,
                         config.workdir / "held-out-md", progress)  # not inside held-out/, the export target
        if not md.frames:
            raise HeldOutError(f"held-out set: none of the {md.runs} MD runs with the labeler gave labels; "
                               "give validation.data (a labelled file) or fix the labeler: "
                               + " | ".join(md.failures + md.rejected)[:3000])
        # The MD's own labels: stored as completed rows, never labelled a second time.
        added = held_out.add([NewStructure(frame, "held-out", labeler=spec.name, labeler_digest=spec.digest())
                              for frame in md.frames])
        held_out_problems = md.failures + md.rejected
    else:
        added = []
    return Preparation(bootstrap_added=sum(o.added for o in bootstrap), held_out_added=sum(o.added for o in added),
                       held_out_problems=held_out_problems)


@dataclass
class Exploration:
    trajectories: list[str]
    walkers: int
    stopped_early: int
    uncertainty: list[float] = field(default_factory=list)  # per frame: max γ, or committee max force std

    def summary(self, lower: float) -> ExplorationSummary:
        return ExplorationSummary(trajectories=self.trajectories, walkers=self.walkers, frames=len(self.uncertainty),
                                  stopped_early=self.stopped_early, **gamma_statistics(self.uncertainty, lower))

    def add_walker(self, walker: WalkerResult) -> None:
        self.trajectories.append(str(walker.trajectory))
        self.uncertainty.extend(walker.uncertainty)
        self.stopped_early += walker.stopped_early
        self.walkers += 1


def explore(config: CampaignConfig, artifact: PotentialArtifact, generation: int,
            md_walkers: list[WalkerResult] | None = None) -> Exploration:
    """Explore with the generation's potential: MD walkers (every seed x temperature x walker)
    and/or a sampling-rules walk per seed, as `exploration.engine` says. The frames go beside the
    potential, in its generation directory, one extxyz file per walker or walk.

    `md_walkers`: the MD walkers' results when they ran elsewhere (`explore_md_walker` for each of
    `md_walker_indices`, e.g. fanned out on a Dask cluster); by default they run here, one by one."""
    out = Path(artifact.generation_dir) / "explore"
    result = Exploration(trajectories=[], walkers=0, stopped_early=0)
    seeds = _seeds_the_potential_knows(config, artifact)
    indices = md_walker_indices(config)
    sampling = config.exploration.engine in ("sampling", "both")
    calculator = None
    if sampling or (md_walkers is None and indices):
        calculator = get_trainer(artifact.backend).make_calculator(artifact)
    if sampling:
        _explore_by_sampling(config, calculator, seeds, out, generation, result)
    if md_walkers is None:
        md_walkers = [_run_md_walker(config, calculator, seeds, generation, index, out) for index in indices]
    expected = [_walker_file(index) for index in indices]
    if [Path(walker.trajectory).name for walker in md_walkers] != expected:
        raise ValueError(f"the MD walkers given are not this exploration's: expected {', '.join(expected) or 'none'}, "
                         f"in that order; got {', '.join(Path(w.trajectory).name for w in md_walkers) or 'none'}")
    for walker in md_walkers:
        result.add_walker(walker)
    return result


def _walker_file(index: int) -> str:
    return f"walker-{index:03d}.extxyz"


def md_walker_indices(config: CampaignConfig) -> list[int]:
    """The MD walkers' numbers (walker-NNN.extxyz; they follow the sampling walks, one per seed)."""
    settings = config.exploration
    if settings.engine == "sampling":
        return []
    seeds = len(build_seeds(config.seeds, config.seed))
    first = seeds if settings.engine == "both" else 0
    return list(range(first, first + seeds * len(settings.temperatures_K) * settings.walkers_per_temperature))


def explore_md_walker(config: CampaignConfig, artifact: PotentialArtifact, generation: int,
                      index: int) -> WalkerResult:
    """One MD walker of `explore`, on its own: the same seed structure, temperature, random seed
    and trajectory file as when `explore` runs it."""
    seeds = _seeds_the_potential_knows(config, artifact)
    calculator = get_trainer(artifact.backend).make_calculator(artifact)
    return _run_md_walker(config, calculator, seeds, generation, index, Path(artifact.generation_dir) / "explore")


def _seeds_the_potential_knows(config: CampaignConfig, artifact: PotentialArtifact) -> list[Atoms]:
    """The seed structures; a seed with an element the potential was never trained for (one that
    would appear only in exploration, e.g. seeds not copied into generation 0 with a bootstrap
    pool that lacks it) is a clear error naming the seed and the element."""
    seeds = build_seeds(config.seeds, config.seed)
    known = set(artifact.elements)
    for index, atoms in enumerate(seeds):
        unknown = sorted(set(atoms.get_chemical_symbols()) - known)
        if unknown:
            raise ValueError(f"seeds[{index}] ({atoms.get_chemical_formula()}) holds {unknown}, which the potential "
                             f"of {artifact.generation_dir} was never trained for (elements {sorted(known)}); "
                             "give generation 0 structures with them (bootstrap.per_seed > 0 or a bootstrap pool "
                             "that contains them)")
    return seeds


def _run_md_walker(config: CampaignConfig, calculator, seeds: list[Atoms], generation: int, index: int,
                   out: Path) -> WalkerResult:
    settings = config.exploration
    indices = md_walker_indices(config)
    if index not in indices:
        known = f"walkers {indices[0]}..{indices[-1]}" if indices else "none (engine: sampling)"
        raise ValueError(f"no MD walker {index} in this exploration; its MD walkers: {known}")
    # walkers run seed by seed, then temperature by temperature, then repeat
    position = index - indices[0]
    per_seed = len(settings.temperatures_K) * settings.walkers_per_temperature
    structure = seeds[position // per_seed]
    temperature = settings.temperatures_K[(position % per_seed) // settings.walkers_per_temperature]
    return run_walker(structure, calculator, WalkerSettings(
        temperature_K=temperature, steps=settings.steps, timestep_fs=settings.timestep_fs,
        friction_per_fs=settings.friction_per_fs, record_every=settings.record_every,
        uncertainty_upper=config.selection.upper, uncertainty_key=config.selection.uncertainty_key,
        seed=1000 * config.seed + 100 * generation + index), out / _walker_file(index))


def _explore_by_sampling(config: CampaignConfig, calculator, seeds: list[Atoms], out: Path, generation: int,
                         result: Exploration) -> None:
    """One sampling-rules walk per seed (resumed when a killed run left it unfinished); its
    accepted structures become frames carrying the model's uncertainty, like an MD trajectory's."""
    from mlip_autopipec.sampling.config import load_rules
    from mlip_autopipec.sampling.engine import run_sampling

    rules = load_rules(config.exploration.sampling_rules)
    for index, structure in enumerate(seeds):
        run_dir = out / f"sample-{index:03d}"
        summary = run_sampling(structure, calculator, rules, run_dir, config.exploration.sampling_steps,
                               seed=1000 * config.seed + 100 * generation + index,
                               resume=(run_dir / "steps.jsonl").exists(),
                               candidate_prefix=f"gen{generation:03d}-s{index:03d}-")
        trajectory, uncertainty = _sampled_frames(run_dir, out / f"sample-{index:03d}.extxyz", calculator,
                                                  config.selection.uncertainty_key)
        result.trajectories.append(str(trajectory))
        result.uncertainty.extend(uncertainty)
        result.walkers += 1
        result.stopped_early += summary.stopped_by != "steps"


def _sampled_frames(run_dir: Path, target: Path, calculator, uncertainty_key: str) -> tuple[Path, list[float]]:
    """The walk's accepted (pre-quench) structures as frames with `sampling_step`, `sampling_action`
    and the uncertainty: γ as the walk recorded it, else the calculator's (e.g. a committee's
    max_force_std) evaluated here."""
    from mlip_autopipec.sampling.recorders import STEPS_FILE, read_lines
    from mlip_autopipec.sampling.structure import load_npz

    frames, uncertainty = [], []
    for record in read_lines(run_dir / STEPS_FILE):
        if not record.get("accepted"):
            continue
        stored = load_npz(run_dir / record["structure"])
        frame = Atoms(numbers=stored.numbers, positions=stored.positions, cell=stored.cell, pbc=stored.pbc)
        frame.info["sampling_step"] = record["id"]
        frame.info["sampling_action"] = record["action"]
        if uncertainty_key == "max_gamma" and "max_gamma_pre" in record:
            frame.info["max_gamma"] = record["max_gamma_pre"]
        elif uncertainty_key != "max_gamma":
            probe = frame.copy()
            probe.calc = calculator
            probe.get_forces()
            if uncertainty_key in calculator.results:
                frame.info[uncertainty_key] = float(calculator.results[uncertainty_key])
        if uncertainty_key in frame.info:
            uncertainty.append(frame.info[uncertainty_key])
        frames.append(frame)
    with atomic_path(target) as staging:
        ase.io.write(staging, frames, format="extxyz")
    return target, uncertainty


def finished_generation(config: CampaignConfig, dataset_digest: str,
                        initial_digest: str | None) -> PotentialArtifact | None:
    """The campaign's finished generation trained on this dataset with this training config from this
    starting potential (reused, never retrained), or None."""
    return find_matching(config.workdir / "generations", dataset_digest, config.training.digest(), initial_digest)


def select_and_queue(config: CampaignConfig, artifact: PotentialArtifact, trajectories: list[str],
                     generation: int) -> QueueSummary:
    """Choose explored frames to label and send them through the DFT outbox: exact and near
    duplicates of each other, of the campaign's stored rows and of the queue already submitted are
    skipped (workdir/outbox/dft_skip.jsonl says why); the rest become pending rows of the next
    generation and lines of workdir/outbox/dft_submit.jsonl. Re-running queues nothing twice."""
    selection = config.selection
    frames, origins = [], []
    for path in trajectories:
        for frame in ase.io.read(path, ":"):
            frames.append(frame)
            origins.append(f"gen-{generation:03d}:{Path(path).stem}:{_step_of(frame)}")
    values = [frame.info.get(selection.uncertainty_key, 0.0) for frame in frames]
    count = selection.max_per_generation
    if selection.method == "committee":
        levels = TrustLevels(selection.trust_lower, selection.trust_upper)
        candidates = classify(values, levels)["candidate"]
        chosen = select_candidates(values, levels, count)
    else:
        # Atoms of a species without an active set yet have no trustworthy γ: uncertain (selection/gamma.py).
        uncertain = frames_with_species(frames, artifact.species_without_gamma)
        candidates = gamma_candidates(values, selection.gamma_lower, selection.gamma_upper, uncertain)
        pool = [frames[i] for i in candidates]
        if selection.method == "d_optimal":
            picked = select_d_optimal(pool, artifact.path("potential_yaml"), artifact.path("active_set"), count,
                                      uncertain_species=artifact.species_without_gamma)
        else:
            picked = select_top_gamma([values[i] for i in candidates], count, [uncertain[i] for i in candidates])
        chosen = [candidates[i] for i in picked]
    report = process_outbox([Candidate(origins[i], frames[i], origins[i]) for i in chosen],
                            StructureStore(config.store_url, campaign=config.campaign),
                            out_dir=config.workdir / "outbox", tolerance=selection.near_duplicate_tolerance,
                            source=_SOURCES[config.exploration.engine], generation=generation + 1)
    counts = report.counts
    return QueueSummary(candidates=len(candidates), selected=len(chosen), queued=counts["submitted"],
                        skipped_exact=counts["skipped_exact"], skipped_near=counts["skipped_near"])


_SOURCES = {"md": "md", "sampling": "sampling", "both": "explore"}  # provenance of queued rows


def _step_of(frame: Atoms) -> str:
    if "sampling_step" in frame.info:
        return f"sampling-step-{frame.info['sampling_step']}"
    return f"md-step-{frame.info.get('md_step')}"


def _pending(atoms: Atoms, source: str, generation: int, origin: str | None = None) -> NewStructure:
    geometry = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return NewStructure(LabelledFrame(geometry, None, None), source, status=Status.PENDING,
                        generation=generation, origin=origin)


