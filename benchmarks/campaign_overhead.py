"""What Prefect costs a campaign: the demo campaign as a flow against the same library steps
called directly, in the same run; and a re-run of the finished campaign.

    python -m benchmarks.campaign_overhead [--config campaigns/cuni-demo.yaml] [--generations 2]
        [--running-server | --temporary-server]

Both runs start from an empty work directory and do the same work: prepare, label the held-out set
and generation 0, then per generation export, train, evaluate (test and held-out, with plots),
explore (and render the most uncertain walker when the config says so), select and label; the
flow also writes its generation records and the learning-curve plot. Convergence stopping is
switched off so both run the same generations. By default the flows run as a user's commands do
with nothing set up: no PREFECT_API_URL, a fresh PREFECT_HOME, so the campaign's command starts the
local server (flows/cli.py); its start is timed on its own ("cold") and the re-run finds it again.
--running-server measures what a deployed campaign pays: the flows talk to a `prefect server start`
that was up before the clock started. --temporary-server: Prefect's default before the local server,
a temporary server per command (MLIP_LOCAL_SERVER=0).
Goals: flow / direct <= 1.05; re-running the finished campaign <= 5% of the first run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def direct(config_path: str) -> None:
    """The campaign's steps as plain library calls, no Prefect."""
    from mlip_autopipec.backends import get_trainer
    from mlip_autopipec.campaign import steps
    from mlip_autopipec.campaign.config import CampaignConfig
    from mlip_autopipec.data.export import export_dataset
    from mlip_autopipec.generations import generation_dir
    from mlip_autopipec.labeling import label_pending
    from mlip_autopipec.store import StructureStore
    from mlip_autopipec.rendering import RenderingUnavailable, render_most_uncertain
    from mlip_autopipec.store.harvest import harvest_for_export
    from mlip_autopipec.validation.evaluation import evaluate_on_split

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
        evaluate_on_split(artifact, manifest, None, "test")
        evaluate_on_split(artifact, held_out, "train", "held-out")
        exploration = steps.explore(config, artifact, generation)
        if config.exploration.render_most_uncertain:
            with contextlib.suppress(RenderingUnavailable):  # as the flow: no pictures, no failure
                render_most_uncertain(exploration.trajectories, artifact.generation_dir / "report")
        steps.select_and_queue(config, artifact, exploration.trajectories, generation)
        label_rows(store, generation + 1)
        previous = artifact


@contextlib.contextmanager
def running_prefect_server(seconds: float = 180.0) -> Iterator[str]:
    """`prefect server start` on a free loopback port, started before the timed runs (a deployed
    campaign talks to a server that is already up); yields its API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="campaign-bench-prefect-"))
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    api = f"http://127.0.0.1:{port}/api"
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited with {server.returncode}:\n{_tail(home / 'server.log')}")
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prefect server not healthy after {seconds} s:\n{_tail(home / 'server.log')}")
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(home, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "campaigns" / "cuni-demo.yaml")
    parser.add_argument("--generations", type=int, default=2)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--running-server", action="store_true",
                      help="run the flows against a Prefect server started before the timing, as a "
                           "deployed campaign does (default: the local server the command starts itself)")
    mode.add_argument("--temporary-server", action="store_true",
                      help="a temporary Prefect server per command (MLIP_LOCAL_SERVER=0)")
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

    # The library loop first, with no Prefect server running beside it on the shared cores.
    direct_s = timed([sys.executable, "-m", "benchmarks.campaign_overhead", "--direct", str(configs["direct"])])
    home = work / "prefect-home"  # a user's first command: nothing set up, no server running
    flow_env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
                "PREFECT_HOME": str(home)}
    campaign = [sys.executable, "-m", "flows.active_learning", "--config", str(configs["flow"])]
    cold_s = 0.0
    with contextlib.ExitStack() as stack:
        if args.running_server:
            flow_env = {**os.environ, "PREFECT_API_URL": stack.enter_context(running_prefect_server())}
        elif args.temporary_server:
            flow_env["MLIP_LOCAL_SERVER"] = "0"
        else:
            stack.callback(subprocess.run, [sys.executable, "-m", "flows.cli", "server", "stop"], cwd=ROOT,
                           env=flow_env, capture_output=True)
            cold_s = timed([sys.executable, "-m", "flows.cli", "server", "start"], flow_env)
        flow_s = timed(campaign, flow_env)
        rerun_s = timed(campaign, flow_env)
    server = ("a running Prefect server" if args.running_server else
              "a temporary Prefect server per run" if args.temporary_server else
              f"the local server the first command starts ({cold_s:.1f} s, once)")
    print(f"{args.config.name}, {args.generations} generations, flows on {server} (work in {work})")
    print(f"{'run':<40} {'wall s':>8}")
    print(f"{'flow (python -m flows.active_learning)':<40} {flow_s:>8.1f}")
    print(f"{'library steps called directly':<40} {direct_s:>8.1f}")
    print(f"{'re-run of the finished campaign':<40} {rerun_s:>8.1f}")
    print(f"Prefect overhead ratio {flow_s / direct_s:.3f} (goal <= 1.05); "
          f"re-run {100 * rerun_s / flow_s:.1f}% of the first run (goal <= 5%)")
    if cold_s:
        print(f"with the local server's first start counted in the campaign: {(flow_s + cold_s) / direct_s:.3f}")


if __name__ == "__main__":
    main()
