"""What Prefect costs a campaign: the demo campaign as a flow against the same library steps
called directly, in the same run; and a re-run of the finished campaign.

    python -m benchmarks.campaign_overhead [--config campaigns/cuni-demo.yaml] [--generations 2]

Both runs start from an empty work directory and do the same work: prepare, label the held-out set
and generation 0, then per generation export, train, evaluate (test and held-out, with plots),
explore, select and label. Convergence stopping is switched off so both run the same generations.
Goals: flow / direct <= 1.05; re-running the finished campaign <= 5% of the first run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def direct(config_path: str) -> None:
    """The campaign's steps as plain library calls, no Prefect."""
    from mlip_autopipec.backends import get_trainer
    from mlip_autopipec.campaign import steps
    from mlip_autopipec.campaign.config import CampaignConfig
    from mlip_autopipec.data.export import export_dataset
    from mlip_autopipec.data.readers import read_labelled_frames
    from mlip_autopipec.generations import generation_dir
    from mlip_autopipec.labeling import label_pending
    from mlip_autopipec.store import StructureStore
    from mlip_autopipec.store.harvest import harvest_for_export
    from mlip_autopipec.validation.errors import predict
    from mlip_autopipec.validation.plots import error_histogram, parity_plot

    config = CampaignConfig.load(config_path)
    label = config.labeling
    store = StructureStore(config.store_url, campaign=config.campaign)
    held_store = StructureStore(config.store_url, campaign=config.held_out_campaign)

    def label_rows(target, generation=None):
        label_pending(target, label.calculator, generation=generation, timeout_s=label.timeout_s,
                      max_attempts=label.max_attempts, workers=label.workers)

    steps.prepare(config)
    label_rows(held_store)
    held_out = export_dataset(harvest_for_export(held_store), config.workdir / "held-out", 0.0, config.seed,
                              ["extxyz"])
    label_rows(store, 0)
    previous = None
    for generation in range(config.stop.max_generations):
        manifest = export_dataset(harvest_for_export(store, max_generation=generation),
                                  config.workdir / "datasets" / f"gen-{generation:03d}",
                                  config.export_test_fraction, config.seed, ["extxyz", config.training.backend])
        trainer = get_trainer(config.training.backend)
        artifact = trainer.train(manifest, config.training, generation_dir(config.workdir / "generations", generation),
                                 previous)
        calculator = trainer.make_calculator(artifact)
        for name, dataset, split in (("test", manifest, "test"), ("held-out", held_out, "train")):
            frames = [f for _, f in read_labelled_frames(dataset.path_of("extxyz", split))]
            predictions = predict(calculator, frames)
            parity_plot(predictions, artifact.generation_dir / "report" / f"parity-{name}.png")
            error_histogram(predictions, artifact.generation_dir / "report" / f"errors-{name}.png")
        exploration = steps.explore(config, artifact, generation)
        steps.select_and_queue(config, artifact, exploration.trajectories, generation)
        label_rows(store, generation + 1)
        previous = artifact


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "campaigns" / "cuni-demo.yaml")
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--direct", help=argparse.SUPPRESS)  # internal: run the library loop on this config
    args = parser.parse_args()
    if args.direct:
        direct(args.direct)
        return

    settings = yaml.safe_load(args.config.read_text())
    settings["stop"] = {"max_generations": args.generations, "converged_fraction": None}
    work = Path(tempfile.mkdtemp(prefix="campaign-bench-"))
    configs = {}
    for name in ("flow", "direct"):
        settings["workdir"] = str(work / name)
        configs[name] = work / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(settings))

    flow_s = timed([sys.executable, "-m", "flows.active_learning", "--config", str(configs["flow"])])
    direct_s = timed([sys.executable, "-m", "benchmarks.campaign_overhead", "--direct", str(configs["direct"])])
    rerun_s = timed([sys.executable, "-m", "flows.active_learning", "--config", str(configs["flow"])])
    print(f"{args.config.name}, {args.generations} generations (work in {work})")
    print(f"{'run':<40} {'wall s':>8}")
    print(f"{'flow (python -m flows.active_learning)':<40} {flow_s:>8.1f}")
    print(f"{'library steps called directly':<40} {direct_s:>8.1f}")
    print(f"{'re-run of the finished campaign':<40} {rerun_s:>8.1f}")
    print(f"Prefect overhead ratio {flow_s / direct_s:.3f} (goal <= 1.05); "
          f"re-run {100 * rerun_s / flow_s:.1f}% of the first run (goal <= 5%)")


if __name__ == "__main__":
    main()
