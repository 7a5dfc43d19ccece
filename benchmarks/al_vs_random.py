"""Does active learning pay? Pool-based active learning against random selection, on labelled data.

    python -m benchmarks.al_vs_random --pool ../shared/data/Cu-II.extxyz --test-fraction 0.1 \\
        --initial 10 --batch 10 --rounds 4 --strategies random,gamma_maxvol,top_gamma --seeds 2 --out DIR
    python -m benchmarks.al_vs_random --make-emt-pool DIR       # writes DIR/emt_pool.extxyz, DIR/emt_test.extxyz
    python -m benchmarks.al_vs_random --pool DIR/emt_pool.extxyz --test DIR/emt_test.extxyz ...
    python -m benchmarks.al_vs_random --quick --pool ... --out DIR   # smoke test: tiny basis, 1 round
    python -m benchmarks.al_vs_random --pool ../shared/data/ethanol-revMD17.extxyz --initial 2 ...  # any N0

The pool's own labels act as the oracle. For every seed, all strategies start from the same N0
random frames and the same first potential. Each round a strategy scores the frames it has not
yet labelled with its current potential, takes B of them, and fine-tunes the potential
(Pacemaker, fine_tune 'continue') on everything labelled so far; the test energy and force RMSE
after every fit give the learning curve. The test frames are never in the pool: a separate file
(--test) or a seeded split of the pool file (--test-fraction, the project's export split).

Strategies (the campaign's own selection code, selection/gamma.py):
  random        B frames uniformly at random (seeded by seed and round: reproducible)
  gamma_maxvol  D-optimality: MaxVol on ACE B-projections extending the current active set
                (pace_select -a); if fewer than B frames extend it, the rest by highest max γ
  top_gamma     the B frames with the highest max γ (extrapolation grade)

Any starting size works: with few frames a species may have fewer training environments than ACE
functions; the potential then has no γ for it yet (PotentialArtifact.species_without_gamma), the
γ strategies treat its atoms as uncertain (selection/gamma.py), and the report says, per species,
its atoms in pool and test, per round which species had no γ and the test force RMSE per element,
and after how many labels each strategy's potentials had γ for it.

Writes DIR/al_vs_random_<name>.json (curves per seed, mean and spread, chosen frames, headline,
per-species situation, timings) and DIR/al_vs_random_<name>.png (RMSE against labels, log-log,
bands over seeds), and prints the headline: labels each strategy needs to reach random's
full-budget force RMSE.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.al_curves import RANDOM, headline, headline_table, plot, summarize
from mlip_autopipec.backends.base import PotentialArtifact
from mlip_autopipec.config.training import PacemakerConfig
from mlip_autopipec.data.export import ExportItem, export_dataset, split_by_group
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.problems import FrameProblem, InputError
from mlip_autopipec.data.readers import read_labelled_frames
from mlip_autopipec.data.validation import frame_problems
from mlip_autopipec.files import atomic_write_text, sha256_file

STRATEGIES = ("random", "gamma_maxvol", "top_gamma")
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    initial: int = 10
    batch: int = 10
    rounds: int = 4
    seeds: int = 2
    strategies: tuple[str, ...] = ("random", "gamma_maxvol", "top_gamma")
    functions: int = 15  # ACE functions per element: a small basis
    maxiter_initial: int = 50  # BFGS iterations of the first fit
    maxiter_round: int = 25  # BFGS iterations of every fine-tune
    # No ZBL core by default: Pacemaker's 'auto' core starts at the shortest distance in the training
    # set, and a test frame only 0.1 Å shorter then gets force errors of tens of eV/Å, so the RMSE
    # would measure which strategy happened to label the shortest bond, not how well it learns.
    repulsion: str | None = None
    test_fraction: float = 0.1  # only without --test
    max_pool: int | None = None  # keep the first frames of the pool (after the test split)
    max_test: int | None = None


QUICK = Settings(initial=6, batch=3, rounds=1, seeds=1, strategies=("random", "gamma_maxvol"), functions=6,
                 maxiter_initial=5, maxiter_round=3, max_pool=40, max_test=12)


# -- data --------------------------------------------------------------------------------------------

def read_frames(path: Path) -> list[LabelledFrame]:
    """Every frame of `path`, checked; the first bad one raises InputError naming file, frame and field."""
    frames = []
    for index, frame in read_labelled_frames(path):
        if isinstance(frame, FrameProblem):
            raise InputError(frame)
        problems = frame_problems(frame)
        if problems:
            field_name, message = problems[0]
            raise InputError(FrameProblem(str(path), index, field_name, message))
        frames.append(frame)
    return frames


def pool_and_test(pool_path: Path, test_path: Path | None, settings: Settings) -> tuple[list, list]:
    """The pool and the held-out test frames; without a test file, a seeded split of the pool file."""
    frames = read_frames(pool_path)
    if test_path is not None:
        pool, test = frames, read_frames(test_path)
    else:
        items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
        split = split_by_group(items, settings.test_fraction, seed=0)
        pool = [frames[i] for i in split["train"]]
        test = [frames[i] for i in split["test"]]
    pool = pool[:settings.max_pool]
    test = test[:settings.max_test]
    needed = settings.initial + settings.rounds * settings.batch
    if needed > len(pool):
        raise ValueError(f"{pool_path}: the pool has {len(pool)} frames, fewer than the {needed} labels asked for "
                         f"(--initial {settings.initial} + --rounds {settings.rounds} x --batch {settings.batch})")
    if not test:
        raise ValueError(f"{test_path or pool_path}: no test frames")
    return pool, test


# -- selection ---------------------------------------------------------------------------------------

def initial_choice(pool_size: int, count: int, seed: int) -> list[int]:
    """The N0 frames every strategy of this seed starts from."""
    rng = np.random.default_rng([seed, 0])
    return sorted(int(i) for i in rng.choice(pool_size, size=count, replace=False))


def random_choice(remaining: Sequence[int], count: int, seed: int, round_number: int) -> list[int]:
    """`count` of the `remaining` pool indices, the same for the same seed and round."""
    rng = np.random.default_rng([seed, round_number, 1])
    return sorted(int(i) for i in rng.choice(np.asarray(remaining), size=count, replace=False))


def species_counts(frames: Sequence[LabelledFrame]) -> dict[str, int]:
    """Atoms per element over `frames`."""
    counts: dict[str, int] = {}
    for frame in frames:
        for symbol in frame.atoms.get_chemical_symbols():
            counts[symbol] = counts.get(symbol, 0) + 1
    return dict(sorted(counts.items()))


def max_gamma(artifact: PotentialArtifact, frames: Sequence[LabelledFrame]) -> np.ndarray:
    """Max per-atom extrapolation grade γ of every frame under the potential and its active set."""
    from mlip_autopipec.backends.pacemaker.calculator import make_calculator

    calculator = make_calculator(artifact, with_active_set=True)
    grades = []
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        atoms.get_potential_energy()
        grades.append(float(np.max(calculator.results["gamma"])))
    return np.array(grades)


def choose(strategy: str, remaining: list[int], pool: Sequence[LabelledFrame], count: int,
           artifact: PotentialArtifact, seed: int, round_number: int) -> tuple[list[int], dict]:
    """Pool indices the strategy labels next, and what it saw (for the record)."""
    from mlip_autopipec.selection.gamma import frames_with_species, select_d_optimal, select_top_gamma

    if strategy == "random":
        return random_choice(remaining, count, seed, round_number), {}
    candidates = [pool[i] for i in remaining]
    # Atoms of a species without γ yet count as uncertain, as in the campaign's selection.
    uncertain = frames_with_species([frame.atoms for frame in candidates], artifact.species_without_gamma)
    if strategy == "top_gamma":
        grades = max_gamma(artifact, candidates)
        picked = select_top_gamma(grades, count, uncertain)
        return sorted(remaining[i] for i in picked), {"max_gamma_of_chosen": [float(grades[i]) for i in picked]}
    if strategy == "gamma_maxvol":
        picked = select_d_optimal([frame.atoms for frame in candidates], artifact.path("potential_yaml"),
                                  artifact.path("active_set"), count,
                                  uncertain_species=artifact.species_without_gamma)
        topped_up = 0
        if len(picked) < count:  # fewer frames extend the active set than asked for: top up by max γ
            grades = max_gamma(artifact, candidates)
            taken = set(picked)
            extra = [i for i in select_top_gamma(grades, len(candidates), uncertain)
                     if i not in taken][:count - len(picked)]
            topped_up = len(extra)
            picked = [*picked, *extra]
        return sorted(remaining[i] for i in picked), {"topped_up_by_gamma": topped_up}
    raise ValueError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")


# -- training and evaluation -------------------------------------------------------------------------

def train(frames: Sequence[LabelledFrame], config: PacemakerConfig, directory: Path,
          initial: PotentialArtifact | None) -> PotentialArtifact:
    """Export `frames` (all for training) and fit, fine-tuning `initial` when given."""
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    manifest = export_dataset(items, directory / "dataset", test_fraction=0.0, seed=0, formats=["pacemaker"])
    return PacemakerTrainer().train(manifest, config, directory / "potential", initial_potential=initial)


def test_set_errors(artifact: PotentialArtifact, test: Sequence[LabelledFrame]) -> tuple[float, float, dict]:
    """Test energy RMSE (meV/atom), force RMSE (meV/Å) and force RMSE per element (meV/Å)."""
    from mlip_autopipec.backends.pacemaker.calculator import make_calculator
    from mlip_autopipec.validation.errors import predict
    from mlip_autopipec.validation.physical import per_element_force_errors

    predictions = predict(make_calculator(artifact, with_active_set=False), test,
                          energy_reference=artifact.energy_reference)
    metrics = predictions.summary()
    symbols = [symbol for frame in test for symbol in frame.atoms.get_chemical_symbols()]
    per_element = {element: row["forces_rmse_mev_per_angstrom"]
                   for element, row in per_element_force_errors(predictions, symbols).items()}
    return metrics["energy_rmse_mev_per_atom"], metrics["forces_rmse_mev_per_angstrom"], per_element


@dataclass
class Curve:
    """One strategy, one seed."""

    strategy: str
    seed: int
    labels: list[int] = field(default_factory=list)
    labelled_atoms: list[int] = field(default_factory=list)
    energy_rmse: list[float] = field(default_factory=list)
    force_rmse: list[float] = field(default_factory=list)
    chosen: list[list[int]] = field(default_factory=list)  # pool indices, per round (round 0: the N0)
    selection: list[dict] = field(default_factory=list)
    force_rmse_per_element: list[dict[str, float]] = field(default_factory=list)
    species_without_gamma: list[list[str]] = field(default_factory=list)  # per point: the potential's
    seconds: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "select": 0.0, "evaluate": 0.0})

    def record(self, labelled: Sequence[int], pool: Sequence[LabelledFrame], errors: tuple[float, float, dict],
               potential: PotentialArtifact) -> None:
        self.labels.append(len(labelled))
        self.labelled_atoms.append(sum(len(pool[i].atoms) for i in labelled))
        self.energy_rmse.append(errors[0])
        self.force_rmse.append(errors[1])
        self.force_rmse_per_element.append(errors[2])
        self.species_without_gamma.append(sorted(potential.species_without_gamma))


def run_seed(seed: int, pool: Sequence[LabelledFrame], test: Sequence[LabelledFrame], settings: Settings,
             work: Path, say: Callable[[str], None]) -> list[Curve]:
    first_config = PacemakerConfig(number_of_functions_per_element=settings.functions, nradmax_by_orders=[5, 2, 1],
                                   lmax_by_orders=[0, 2, 1], maxiter=settings.maxiter_initial,
                                   display_step=max(1, settings.maxiter_initial), batch_size=100, seed=seed,
                                   repulsion=settings.repulsion, timeout_seconds=3600)
    round_config = first_config.model_copy(update={"maxiter": settings.maxiter_round,
                                                   "display_step": max(1, settings.maxiter_round)})
    start = initial_choice(len(pool), settings.initial, seed)
    clock = time.perf_counter()
    first = train([pool[i] for i in start], first_config, work / f"seed-{seed}" / "initial", None)
    train_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    first_errors = test_set_errors(first, test)
    evaluate_seconds = time.perf_counter() - clock
    say(f"seed {seed}: {len(start)} initial labels, test force RMSE {first_errors[1]:.1f} meV/Å "
        f"(fit {train_seconds:.0f} s)" + _no_gamma_note(first))

    curves = []
    for strategy in settings.strategies:
        curve = Curve(strategy, seed, chosen=[list(start)], selection=[{}])
        curve.seconds.update(train=train_seconds, evaluate=evaluate_seconds)  # the shared first fit
        curve.record(start, pool, first_errors, first)
        labelled, potential = list(start), first
        for round_number in range(1, settings.rounds + 1):
            remaining = sorted(set(range(len(pool))) - set(labelled))
            clock = time.perf_counter()
            picked, info = choose(strategy, remaining, pool, settings.batch, potential, seed, round_number)
            curve.seconds["select"] += time.perf_counter() - clock
            labelled += picked
            clock = time.perf_counter()
            potential = train([pool[i] for i in labelled], round_config,
                              work / f"seed-{seed}" / strategy / f"round-{round_number}", potential)
            curve.seconds["train"] += time.perf_counter() - clock
            clock = time.perf_counter()
            errors = test_set_errors(potential, test)
            curve.seconds["evaluate"] += time.perf_counter() - clock
            curve.chosen.append(picked)
            curve.selection.append(info)
            curve.record(labelled, pool, errors, potential)
            say(f"seed {seed} {strategy:<12} round {round_number}: {len(labelled)} labels, "
                f"force RMSE {errors[1]:.1f} meV/Å, energy RMSE {errors[0]:.2f} meV/atom" + _no_gamma_note(potential))
        curves.append(curve)
    return curves


def _no_gamma_note(potential: PotentialArtifact) -> str:
    missing = sorted(potential.species_without_gamma)
    return f"; no γ yet for {', '.join(missing)} (too few environments)" if missing else ""


# -- the whole benchmark -----------------------------------------------------------------------------

def run_benchmark(pool_path: Path, test_path: Path | None, settings: Settings, out: Path, name: str,
                  say: Callable[[str], None] = print) -> dict:
    """Run every seed and strategy; write the JSON and the plot into `out`; return the JSON content."""
    unknown = sorted(set(settings.strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    if RANDOM not in settings.strategies:
        raise ValueError("the headline compares against random selection: include 'random' in --strategies")
    small = {key: value for key, value in (("--initial", settings.initial), ("--batch", settings.batch),
                                           ("--rounds", settings.rounds), ("--seeds", settings.seeds)) if value < 1}
    if small:
        raise ValueError(f"{', '.join(small)} must be at least 1, got {small}")
    started = time.perf_counter()
    pool, test = pool_and_test(pool_path, test_path, settings)
    say(f"{name}: pool {len(pool)} frames ({sum(len(f.atoms) for f in pool)} atoms), "
        f"test {len(test)} frames ({sum(len(f.atoms) for f in test)} atoms)")
    work = out / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)  # generations are never overwritten: start clean

    runs: dict[str, list[dict]] = {strategy: [] for strategy in settings.strategies}
    for seed in range(settings.seeds):
        for curve in run_seed(seed, pool, test, settings, work, say):
            runs[curve.strategy].append({key: value for key, value in vars(curve).items() if key != "strategy"})
        # After every seed: a run stopped later still leaves the curves of the seeds it finished.
        report = write_report(runs, pool, test, pool_path, test_path, settings, out, name,
                              time.perf_counter() - started)
    say(headline_table(report["headline"]))
    say(species_table(report))
    say(f"wall time {report['wall_seconds']:.0f} s; wrote {out / f'al_vs_random_{name}.json'} and .png")
    return report


def write_report(runs: dict[str, list[dict]], pool: Sequence[LabelledFrame], test: Sequence[LabelledFrame],
                 pool_path: Path, test_path: Path | None, settings: Settings, out: Path, name: str,
                 wall_seconds: float) -> dict:
    """The JSON of the curves, the mean curves and the headline, and the plot."""
    report = {
        "benchmark": "al_vs_random",
        "dataset": name,
        "pool": {"file": str(pool_path), "sha256": sha256_file(pool_path), "frames": len(pool),
                 "atoms": sum(len(f.atoms) for f in pool), "atoms_per_element": species_counts(pool)},
        "test": {"file": str(test_path or pool_path), "sha256": sha256_file(test_path or pool_path),
                 "frames": len(test), "atoms": sum(len(f.atoms) for f in test),
                 "atoms_per_element": species_counts(test),
                 "held_out_by": "separate file" if test_path else
                 f"seeded split of the pool file (test_fraction {settings.test_fraction}, seed 0)"},
        "settings": {**vars(settings), "strategies": list(settings.strategies),
                     "basis": "ACE, nradmax [5, 2, 1], lmax [0, 2, 1], cutoff 5 Å",
                     "fine_tune": "continue"},
        "runs": runs,
        "wall_seconds": wall_seconds,
    }
    return finish_report(report, out / f"al_vs_random_{name}.json")


def finish_report(report: dict, json_path: Path) -> dict:
    """Derive the mean curves and the headline from `report['runs']`; write the JSON and the plot beside it."""
    runs = report["runs"]
    report["seeds_done"] = len(runs[RANDOM])
    report["summary"] = summarize(runs)
    report["headline"] = headline(report["summary"], runs)
    report["species_without_gamma"] = gamma_per_species(runs)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    plot(report["summary"], report["headline"],
         f"{report['dataset']}: active learning vs random ({report['seeds_done']} seeds, "
         f"{report['settings']['functions']} ACE functions per element)", json_path.with_suffix(".png"))
    return report


def gamma_per_species(runs: dict[str, list[dict]]) -> dict[str, dict[str, list[int | None]]]:
    """Per strategy, per species that some potential had no γ for: per seed, the labels of the first
    potential from which on it had γ (None: it never got one within the budget)."""
    result: dict[str, dict[str, list[int | None]]] = {}
    for strategy, curves in runs.items():
        missing = sorted({element for curve in curves for point in curve.get("species_without_gamma", [])
                          for element in point})
        result[strategy] = {}
        for element in missing:
            per_seed = []
            for curve in curves:
                points = list(zip(curve["labels"], curve["species_without_gamma"]))
                later = [labels for position, (labels, _) in enumerate(points)
                         if all(element not in without for _, without in points[position:])]
                per_seed.append(later[0] if later else None)
            result[strategy][element] = per_seed
    return result


def species_table(report: dict) -> str:
    """Lines for a person: per species, atoms in pool and test, and when each strategy's potentials got γ."""
    lines = []
    for element, count in report["pool"].get("atoms_per_element", {}).items():
        tested = report["test"].get("atoms_per_element", {}).get(element, 0)
        line = f"{element}: {count} atoms in the pool, {tested} in test"
        got = {strategy: seeds[element] for strategy, seeds in report.get("species_without_gamma", {}).items()
               if element in seeds}
        if got:
            line += "; no γ at first, γ from " + ", ".join(
                f"{strategy} {'/'.join('never' if n is None else str(n) for n in seeds)} labels"
                for strategy, seeds in got.items())
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.al_vs_random", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    parser.add_argument("--pool", type=Path, help="labelled frames to select from (extxyz or Pacemaker DataFrame)")
    parser.add_argument("--test", type=Path, help="held-out test frames; without it, a seeded split of --pool")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--initial", type=int,
                        help=f"N0, the shared first labels (default {defaults.initial}; {QUICK.initial} with --quick)")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="B, labels taken per round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="R, selection rounds")
    parser.add_argument("--strategies", default=",".join(defaults.strategies),
                        help=f"comma-separated, from {','.join(STRATEGIES)}; random is required")
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds (0 .. S-1)")
    parser.add_argument("--functions", type=int, default=defaults.functions, help="ACE functions per element")
    parser.add_argument("--maxiter-initial", type=int, default=defaults.maxiter_initial)
    parser.add_argument("--maxiter-round", type=int, default=defaults.maxiter_round)
    parser.add_argument("--repulsion", choices=["none", "auto"], default="none",
                        help="Pacemaker's ZBL inner core ('auto'); off by default, see Settings.repulsion")
    parser.add_argument("--max-pool", type=int, help="use only the first N pool frames")
    parser.add_argument("--max-test", type=int, help="use only the first N test frames")
    parser.add_argument("--name", help="dataset name in the output file names (default: the pool file's stem)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny basis, 1 seed, 1 round, random and gamma_maxvol, 40 pool frames")
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="recompute the headline and the plot from a finished run's JSON, and stop")
    parser.add_argument("--make-emt-pool", type=Path, metavar="DIR",
                        help="write DIR/emt_pool.extxyz and DIR/emt_test.extxyz (EMT copper) and stop")
    args = parser.parse_args(argv)
    if args.make_emt_pool is None and args.report_only is None and args.pool is None:
        parser.error("give --pool FILE (or --make-emt-pool DIR to generate one)")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    if args.quick:  # --initial still chooses the starting size
        return QUICK if args.initial is None else replace(QUICK, initial=args.initial)
    return Settings(initial=Settings.initial if args.initial is None else args.initial, batch=args.batch,
                    rounds=args.rounds, seeds=args.seeds,
                    strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
                    functions=args.functions, maxiter_initial=args.maxiter_initial,
                    maxiter_round=args.maxiter_round, test_fraction=args.test_fraction,
                    max_pool=args.max_pool, max_test=args.max_test,
                    repulsion=None if args.repulsion == "none" else args.repulsion)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make_emt_pool is not None:
        from benchmarks.emt_pool import write_pool_and_test

        pool_path, test_path = write_pool_and_test(args.make_emt_pool)
        print(f"wrote {pool_path} and {test_path}")
        return 0
    if args.report_only is not None:
        report = finish_report(json.loads(args.report_only.read_text()), args.report_only)
        print(headline_table(report["headline"]))
        print(species_table(report))
        return 0
    try:
        run_benchmark(args.pool, args.test, settings_from(args), args.out,
                      args.name or args.pool.name.split(".")[0])
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
