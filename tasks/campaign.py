"""Campaign steps around the shared train/label tasks: prepare, explore, select + queue, record."""

from __future__ import annotations

from pathlib import Path

import ase.io
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlip_autopipec.backends import PotentialArtifact, get_trainer
from mlip_autopipec.campaign.config import CampaignConfig
from mlip_autopipec.campaign.records import GenerationRecord, gamma_statistics
from mlip_autopipec.campaign.structures import build_seeds, held_out_snapshots, perturbed_copies
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.exploration.md import WalkerSettings, run_walker
from mlip_autopipec.selection.gamma import gamma_candidates, select_d_optimal, select_top_gamma
from mlip_autopipec.store import NewStructure, Status, StructureStore
from tasks.caching import DIGEST_CACHE


@task(name="prepare campaign", cache_policy=NO_CACHE)
def prepare_task(config_path: str) -> dict:
    """Queue generation 0's perturbed seeds and the held-out set; idempotent (fingerprints)."""
    config = CampaignConfig.load(config_path)
    seeds = build_seeds(config.seeds, config.seed)
    store = StructureStore(config.store_url, campaign=config.campaign)
    bootstrap = store.add([NewStructure(LabelledFrame(atoms, None, None), "bootstrap", status=Status.PENDING)
                           for atoms in perturbed_copies(seeds, config.bootstrap, config.seed)])

    held_out = StructureStore(config.store_url, campaign=config.held_out_campaign)
    if config.validation.data is not None:
        frames = [item for _, item in read_labelled_frames(config.validation.data)
                  if isinstance(item, LabelledFrame)]
        added = held_out.add([NewStructure(frame, "held-out") for frame in frames])
    elif not held_out.status_counts()["completed"]:
        snapshots = held_out_snapshots(seeds, config.validation, config.labeling.calculator, config.seed,
                                       config.workdir / "held-out" / "md")
        added = held_out.add([NewStructure(LabelledFrame(atoms, None, None), "held-out", status=Status.PENDING)
                              for atoms in snapshots])
    else:
        added = []
    return {"bootstrap_added": sum(o.added for o in bootstrap), "held_out_added": sum(o.added for o in added)}


@task(name="explore", cache_policy=DIGEST_CACHE, persist_result=True)
def explore_task(config_path: str, config_digest: str, artifact_path: str, potential_digest: str,
                 generation: int) -> dict:
    """MD walkers with the generation's potential; trajectories go beside the potential."""
    config = CampaignConfig.load(config_path)
    artifact = PotentialArtifact.load(artifact_path)
    calculator = get_trainer(artifact.backend).make_calculator(artifact)
    seeds = build_seeds(config.seeds, config.seed)
    settings = config.exploration
    out = Path(artifact.generation_dir) / "explore"
    trajectories, max_gamma, early = [], [], 0
    walker = 0
    for seed_index, structure in enumerate(seeds):
        for temperature in settings.temperatures_K:
            for _ in range(settings.walkers_per_temperature):
                result = run_walker(structure, calculator, WalkerSettings(
                    temperature_K=temperature, steps=settings.steps, timestep_fs=settings.timestep_fs,
                    friction_per_fs=settings.friction_per_fs, record_every=settings.record_every,
                    gamma_upper=config.selection.gamma_upper,
                    seed=1000 * config.seed + 100 * generation + walker), out / f"walker-{walker:03d}.extxyz")
                trajectories.append(str(result.trajectory))
                max_gamma.extend(result.max_gamma)
                early += result.stopped_early
                walker += 1
    stats = gamma_statistics(max_gamma, config.selection.gamma_lower)
    get_run_logger().info(f"{walker} walkers, {len(max_gamma)} frames, {early} stopped early at gamma > "
                          f"{config.selection.gamma_upper}; {100 * stats['fraction_below_gamma_lower']:.0f}% "
                          f"below gamma_lower")
    return {"trajectories": trajectories, "frames": len(max_gamma), "stopped_early": early, **stats}


@task(name="select and queue", cache_policy=NO_CACHE)
def select_and_queue_task(config_path: str, artifact_path: str, trajectories: list[str], generation: int) -> dict:
    """Choose frames to label and queue them as pending rows of the next generation.

    Frames already stored (or queued) are skipped by fingerprint, so a re-run queues nothing twice.
    """
    config = CampaignConfig.load(config_path)
    artifact = PotentialArtifact.load(artifact_path)
    frames = [frame for path in trajectories for frame in ase.io.read(path, ":")]
    gammas = [frame.info.get("max_gamma", 0.0) for frame in frames]
    candidates = gamma_candidates(gammas, config.selection.gamma_lower, config.selection.gamma_upper)
    pool = [frames[i] for i in candidates]
    count = config.selection.max_per_generation
    if config.selection.method == "d_optimal" and artifact.backend == "pacemaker":
        chosen = select_d_optimal(pool, artifact.path("potential_yaml"), artifact.path("active_set"), count)
    else:
        chosen = select_top_gamma([gammas[i] for i in candidates], count)
    store = StructureStore(config.store_url, campaign=config.campaign)
    outcomes = store.add([NewStructure(LabelledFrame(_geometry(pool[i]), None, None), "md",
                                       status=Status.PENDING, generation=generation + 1,
                                       origin=f"gen-{generation:03d}:md-step-{pool[i].info.get('md_step')}")
                          for i in chosen])
    queued = sum(o.added for o in outcomes)
    get_run_logger().info(f"{len(candidates)} candidates, {len(chosen)} selected "
                          f"({config.selection.method}), {queued} queued for labelling")
    return {"candidates": len(candidates), "selected": len(chosen), "queued": queued}


@task(name="record generation", cache_policy=NO_CACHE)
def record_task(config_path: str, fields: dict) -> dict:
    """Write the generation's record (labels_total is read from the store now)."""
    config = CampaignConfig.load(config_path)
    completed = StructureStore(config.store_url, campaign=config.campaign).status_counts()["completed"]
    record = GenerationRecord.model_validate({**fields, "labels_total": completed})
    record.save(config.workdir / "generations")
    return record.model_dump(mode="json")


def _geometry(atoms):
    from ase import Atoms

    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
