"""The sampling engine: a walk from basin to basin driven by the sampling rules.

    summary = run_sampling(structure, EMT(), load_rules("campaigns/sampling-rules.yaml"), Path("run"),
                           steps=200, seed=0, target_basins=5)

The start is quenched and registered as basin 0. Each step then draws an action (by weight; one
that has nothing to act on is redrawn), applies it and the action plugins, and runs the validators
(a rejected step is recorded and the next step resamples from the same state). An accepted
structure is evaluated by the model (force_pre, γ), quenched (force_post), matched against the
basin registry, and offered to the trigger; the walk continues from the quenched structure.

Step `i` draws its random numbers from `default_rng([seed, i])`, so a resumed run takes exactly
the steps an uninterrupted run would have taken. `steps` is the total for the run directory:
resuming continues up to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from mlip_autopipec.outbox.outbox import atoms_to_json
from mlip_autopipec.sampling.actions import NotApplicable, apply_action, bond_graph
from mlip_autopipec.sampling.basins import Basin, BasinRegistry, basin_descriptor
from mlip_autopipec.sampling.config import MinDistValidator, Quench, QualityValidator, SamplingRules
from mlip_autopipec.sampling.plugins import apply_plugins
from mlip_autopipec.sampling.quench import QuenchResult, quench
from mlip_autopipec.sampling.recorders import (BASINS_FILE, INITIAL_STRUCTURE, QUEUE_FILE, STEPS_FILE,
                                               STRUCTURES_DIR, append_line, read_lines, repair,
                                               step_structure_name)
from mlip_autopipec.sampling.structure import fixed_mask, load_npz, save_npz
from mlip_autopipec.sampling.triggers import fired_rules, force_stats
from mlip_autopipec.sampling.validators import check_min_dist, check_quality, quality_score, reason_code


@dataclass
class SamplingSummary:
    run_dir: str
    steps_file: str
    basins_file: str
    queue_file: str  # dft_queue.jsonl: `python -m flows.outbox --queue` reads it
    attempts_total: int  # steps in the run directory (earlier runs included)
    attempts_rejected: int
    steps_this_run: int
    basins_total: int  # the start included
    new_basins: int  # found by the walk (the start excluded)
    stopped_by: str  # "steps" or "target_basins"
    candidates: list[dict] = field(default_factory=list)  # id, step, action, max_force, top_k_force, max_gamma, triggered_by

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"attempts_total={self.attempts_total} attempts_rejected={self.attempts_rejected} "
                f"basins_total={self.basins_total} new_basins={self.new_basins} "
                f"candidates={len(self.candidates)} stopped_by={self.stopped_by}")


@dataclass
class _Evaluation:
    energy: float
    forces: np.ndarray
    gamma: np.ndarray | None


def _evaluate(atoms: Atoms, calculator) -> _Evaluation:
    work = atoms.copy()
    work.calc = calculator
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(apply_constraint=False))
    gamma = calculator.results.get("gamma")
    return _Evaluation(energy, forces, None if gamma is None else np.asarray(gamma, dtype=float))


def _max_displacement(before: Atoms, after: Atoms) -> float:
    if len(before) == 0:
        return 0.0
    _, lengths = find_mic(after.positions - before.positions, before.cell, before.pbc)
    return float(lengths.max())


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Walk:
    def __init__(self, calculator, rules: SamplingRules, run_dir: Path, seed: int, quench_settings: Quench,
                 candidate_prefix: str):
        self.calculator = calculator
        self.rules = rules
        self.run_dir = run_dir
        self.seed = seed
        self.quench_settings = quench_settings
        self.candidate_prefix = candidate_prefix
        registry = rules.pipeline.basin_registry
        self.registry = BasinRegistry(registry.tolerance, registry.energy_tolerance) if registry else None
        self.actions = rules.enabled_actions()
        self.state: Atoms | None = None
        self.state_basin: int | None = None

    # -- start and resume --------------------------------------------------------------------------

    def start(self, structure: Atoms) -> None:
        start = structure.copy()
        start.calc = None
        result = self._quench(start)
        self.state = result.atoms
        if self.registry is not None:
            basin = self.registry.add(self.registry.describe(result.atoms, result.energy))
            self.state_basin = basin.id
            append_line(self.run_dir / BASINS_FILE, self._basin_record(basin, None, result, INITIAL_STRUCTURE))
        # written last: its presence marks a started run (see run_sampling)
        save_npz(self.run_dir / STRUCTURES_DIR / INITIAL_STRUCTURE, structure, forces=result.forces,
                 quenched_positions=result.atoms.positions, quenched_energy=np.array(result.energy))

    def resume(self, steps: list[dict]) -> None:
        structures = self.run_dir / STRUCTURES_DIR
        accepted = [s for s in steps if s["accepted"]]
        last = step_structure_name(accepted[-1]["id"]) if accepted else INITIAL_STRUCTURE
        self.state = load_npz(structures / last, prefix="quenched_")
        if self.registry is not None:
            for record in read_lines(self.run_dir / BASINS_FILE):
                atoms = load_npz(structures / record["structure"], prefix="quenched_")
                basin = Basin(record["basin"], record["fingerprint"], record["energy_per_atom"],
                              record["composition"], basin_descriptor(atoms))
                self.registry.basins.append(basin)
            self.state_basin = accepted[-1]["basin"] if accepted else 0

    # -- one step ----------------------------------------------------------------------------------

    def step(self, step_id: int) -> dict:
        began = time.perf_counter()
        rng = np.random.default_rng([self.seed, step_id])
        names = list(self.actions)
        weights = np.array([self.actions[n].weight for n in names], dtype=float)
        graph = bond_graph(self.state)
        skipped = {}
        while True:
            index = int(rng.choice(len(names), p=weights / weights.sum()))
            name = names[index]
            try:
                outcome = apply_action(name, self.actions[name], self.state, rng, self.calculator, graph)
                break
            except NotApplicable as exc:
                skipped[name] = str(exc)
                weights[index] = 0.0
                if weights.sum() == 0:
                    raise ValueError("no enabled action applies to this structure: "
                                     + "; ".join(f"{k}: {v}" for k, v in skipped.items())) from None
        acted = apply_plugins(outcome.atoms, self.rules.pipeline.action_plugins, rng)
        movable = ~fixed_mask(acted)
        top_k = self.rules.pipeline.trigger.top_k
        record = {"id": step_id, "action": name, "magnitude": outcome.magnitude, "unit": outcome.unit,
                  "max_displacement": _max_displacement(self.state, acted), "accepted": True,
                  "rejected_by": None, "reason": None, "basin_before": self.state_basin}
        if skipped:
            record["not_applicable"] = skipped

        pre: _Evaluation | None = None
        for validator in self.rules.pipeline.validators:
            if isinstance(validator, MinDistValidator):
                reason = check_min_dist(acted, validator)
            elif isinstance(validator, QualityValidator):
                pre = pre or _evaluate(acted, self.calculator)
                pre_max = force_stats(pre.forces, movable, top_k)["max"]
                record["quality_score"] = quality_score(pre_max, record["max_displacement"])
                reason = check_quality(pre_max, record["max_displacement"], validator)
            if reason is not None:
                record.update(accepted=False, rejected_by=reason_code(reason), reason=reason)
                break

        structure_name = step_structure_name(step_id)
        record["structure"] = f"{STRUCTURES_DIR}/{structure_name}"
        if not record["accepted"]:
            if pre is not None:
                record.update(energy_pre=pre.energy, force_pre=force_stats(pre.forces, movable, top_k))
            save_npz(self.run_dir / record["structure"], acted, forces=None if pre is None else pre.forces)
            record["details"] = _json_ready(outcome.details)
            record["seconds"] = time.perf_counter() - began
            return record

        pre = pre or _evaluate(acted, self.calculator)
        quenched = self._quench(acted)
        record.update(energy_pre=pre.energy, force_pre=force_stats(pre.forces, movable, top_k),
                      energy_post=quenched.energy, force_post=force_stats(quenched.forces, movable, top_k),
                      quench={"method": self.quench_settings.method, "steps": quenched.steps,
                              "converged": quenched.converged})
        if pre.gamma is not None:
            record["max_gamma_pre"] = float(pre.gamma.max())
        save_npz(self.run_dir / record["structure"], acted, forces=pre.forces, gamma=pre.gamma,
                 quenched_positions=quenched.atoms.positions, quenched_forces=quenched.forces,
                 quenched_energy=np.array(quenched.energy))

        if self.registry is not None:
            described = self.registry.describe(quenched.atoms, quenched.energy)
            known = self.registry.find(described)
            record["new_basin"] = known is None
            basin = known or self.registry.add(described)
            record["basin"] = basin.id
            if known is None:
                append_line(self.run_dir / BASINS_FILE, self._basin_record(basin, step_id, quenched, structure_name))
            self.state_basin = basin.id

        trigger = self.rules.pipeline.trigger
        post = trigger.force_source == "force_post"
        candidate = quenched.atoms if post else acted
        stats = record["force_post" if post else "force_pre"]
        max_gamma = None if pre.gamma is None or post else float(pre.gamma.max())
        fired = fired_rules(trigger, stats, max_gamma)
        record["triggered_by"] = fired
        if fired:
            record["candidate"] = f"{self.candidate_prefix}{step_id:06d}"
            append_line(self.run_dir / QUEUE_FILE, {
                "id": record["candidate"], **atoms_to_json(candidate), "step": step_id, "action": name,
                "source": trigger.force_source, "energy": quenched.energy if post else pre.energy,
                "max_force": stats["max"], "top_k_force": stats["top_k_mean"], "max_gamma": max_gamma,
                "triggered_by": fired})
        self.state = quenched.atoms
        record["details"] = _json_ready(outcome.details)
        record["seconds"] = time.perf_counter() - began
        return record

    def _quench(self, atoms: Atoms) -> QuenchResult:
        q = self.quench_settings
        return quench(atoms, self.calculator, q.method, q.fmax, q.steps)

    @staticmethod
    def _basin_record(basin: Basin, step: int | None, result: QuenchResult, structure_name: str) -> dict:
        return {"basin": basin.id, "step": step, "fingerprint": basin.fingerprint, "energy": result.energy,
                "energy_per_atom": basin.energy_per_atom, "composition": basin.composition,
                "structure": structure_name}


def run_sampling(structure: Atoms, calculator, rules: SamplingRules, run_dir: str | Path, steps: int,
                 seed: int = 0, target_basins: int | None = None, resume: bool = False,
                 quench_settings: Quench | None = None, candidate_prefix: str | None = None,
                 progress: Callable[[dict], None] | None = None) -> SamplingSummary:
    """Walk until `steps` steps are in `run_dir` or `target_basins` new basins were found.

    `structure` carries its fixed atoms as a FixAtoms constraint (see sampling.structure). With
    `resume`, an existing run directory is repaired and continued (its start structure is used,
    `structure` is ignored); without it, a run directory that already holds steps is an error.
    `quench_settings` overrides the rules' `quench` block; candidate ids are `candidate_prefix`
    + the 6-digit step id (default prefix: the run directory's name and a dash). `progress` is
    called with each step's record after it is committed."""
    run_dir = Path(run_dir)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if target_basins is not None and rules.pipeline.basin_registry is None:
        raise ValueError("target_basins needs the basin_registry recorder in pipeline.recorders")
    (run_dir / STRUCTURES_DIR).mkdir(parents=True, exist_ok=True)
    walk = _Walk(calculator, rules, run_dir, seed, quench_settings or rules.quench,
                 f"{run_dir.resolve().name}-" if candidate_prefix is None else candidate_prefix)

    started = (run_dir / STRUCTURES_DIR / INITIAL_STRUCTURE).exists()
    if started and not resume:
        raise ValueError(f"{run_dir} already holds a sampling run: pass resume (--resume) to continue it, "
                         "or use a new run directory")
    history = repair(run_dir) if started else []
    if started:
        walk.resume(history)
    else:
        for name in (STEPS_FILE, BASINS_FILE, QUEUE_FILE):  # leftovers of a run killed during its start
            (run_dir / name).unlink(missing_ok=True)
        walk.start(structure)

    new_basins = sum(1 for s in history if s.get("new_basin"))
    rejected = sum(1 for s in history if not s["accepted"])
    stopped_by = "steps"
    step_id = len(history)
    this_run = 0
    while step_id < steps:
        if target_basins is not None and new_basins >= target_basins:
            break
        record = walk.step(step_id)
        append_line(run_dir / STEPS_FILE, record)
        rejected += not record["accepted"]
        new_basins += bool(record.get("new_basin"))
        step_id += 1
        this_run += 1
        if progress is not None:
            progress(record)
    if target_basins is not None and new_basins >= target_basins:
        stopped_by = "target_basins"

    candidates = [{k: r.get(k) for k in ("id", "step", "action", "max_force", "top_k_force", "max_gamma",
                                         "triggered_by")} for r in read_lines(run_dir / QUEUE_FILE)]
    return SamplingSummary(
        run_dir=str(run_dir), steps_file=str(run_dir / STEPS_FILE), basins_file=str(run_dir / BASINS_FILE),
        queue_file=str(run_dir / QUEUE_FILE), attempts_total=step_id, attempts_rejected=rejected,
        steps_this_run=this_run, basins_total=len(walk.registry) if walk.registry else 0,
        new_basins=new_basins, stopped_by=stopped_by, candidates=candidates)
