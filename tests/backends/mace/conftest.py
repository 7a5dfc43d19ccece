"""Fixtures for the MACE backend: a small Cu dataset in MACE's format, a tiny model config, one
real `mace_run_train` training shared by every test that needs a trained model, and fake
`mace_run_train` executables for fault injection."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

N_STRUCTURES = 30  # the first 30 Cu-I frames without the 96-atom supercell: 29 frames, 108 atoms


@pytest.fixture(scope="session")
def mace_manifest(shared_data, tmp_path_factory):
    """Cu-I structures exported as for a generation (MACE + extxyz formats, 20% test)."""
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames

    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")
              if isinstance(frame, LabelledFrame)][:N_STRUCTURES]
    frames = [frame for frame in frames if len(frame.atoms) <= 64]  # keeps an epoch at ~2 s on 2 cores
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, tmp_path_factory.mktemp("mace-export"), test_fraction=0.2, seed=0,
                          formats=["mace", "extxyz"])


def _tiny_mace_config(**overrides):
    """8 channels, L=0, correlation 2, r_max 4 A: a 2-epoch training takes ~15 s on 2 cores."""
    from mlip_autopipec.config.mace import MaceConfig

    settings = dict(num_channels=8, max_L=0, correlation=2, r_max=4.0, radial_MLP=[16, 16],
                    epochs=2, batch_size=4, valid_fraction=0.2, seed=1, device="cpu", timeout_seconds=240)
    return MaceConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_mace_config():
    """Builds the tiny test config; keyword arguments override its settings."""
    return _tiny_mace_config


@dataclass
class TrainedMace:
    artifact: object  # PotentialArtifact
    config: object  # MaceConfig
    progress: list

    @property
    def directory(self) -> Path:
        return self.artifact.generation_dir


@pytest.fixture(scope="session")
def mace_generation(mace_manifest, tmp_path_factory) -> TrainedMace:
    from mlip_autopipec.backends.mace import MaceTrainer

    config = _tiny_mace_config()
    events: list = []
    artifact = MaceTrainer().train(mace_manifest, config, tmp_path_factory.mktemp("mace-campaign") / "gen-001",
                                   progress=events.append)
    return TrainedMace(artifact, config, events)


def write_fake_mace(directory: Path, body: str) -> Path:
    """A `mace_run_train` stand-in (Python, no torch): `args` maps --option -> value; cwd is MACE's."""
    executable = directory / "mace_run_train"
    executable.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, os, shutil, sys, time
        from pathlib import Path
        argv = sys.argv[1:]
        args = {}
        for index, item in enumerate(argv):
            if item.startswith("--"):
                following = argv[index + 1] if index + 1 < len(argv) else None
                args[item] = following if following is not None and not following.startswith("--") else True
        tag = f"{args['--name']}_run-{args['--seed']}"
        """) + textwrap.dedent(body))
    executable.chmod(0o755)
    return executable


FAKE_TABLES = """\
2026-01-01 00:00:00.000 INFO: Error-table on TRAIN and VALID:
+---------------+---------------------+------------------+-------------------+
|  config_type  | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+---------------+---------------------+------------------+-------------------+
| train_Default |            1.5      |          2.5     |         10.00     |
| valid_Default |            1.7      |          2.7     |         11.00     |
+---------------+---------------------+------------------+-------------------+
2026-01-01 00:00:00.000 INFO: Error-table on TEST:
+-----------------+---------------------+------------------+-------------------+
|   config_type   | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+-----------------+---------------------+------------------+-------------------+
| Default_Default |            1.9      |          2.9     |         12.00     |
+-----------------+---------------------+------------------+-------------------+
"""


def fake_successful_run(model_source: Path) -> str:
    """Body of a fake that 'trains' by copying a real model and writing MACE's log, results, checkpoint."""
    return f"""
        restarted = "--restart_latest" in args
        lines = ["2026-01-01 00:00:00.000 INFO: MACE version: 0.0-fake"]
        start = 0
        if restarted:
            found = sorted(Path("checkpoints").glob(tag + "_epoch-*.pt"))
            start = int(found[-1].stem.rsplit("-", 1)[1])
            Path("restarted_from.bin").write_bytes(found[-1].read_bytes())
            lines.append(f"2026-01-01 00:00:00.000 INFO: Loading checkpoint: ./checkpoints/{{found[-1].name}}")
        lines.append("2026-01-01 00:00:00.000 INFO: ===========TRAINING===========")
        Path("results").mkdir(exist_ok=True)
        Path("checkpoints").mkdir(exist_ok=True)
        with open(f"results/{{tag}}_train.txt", "w") as results:
            for epoch in range(start, int(args["--max_num_epochs"])):
                lines.append(f"2026-01-01 00:00:00.000 INFO: Epoch {{epoch}}: head: Default, loss=0.00100000, "
                             f"RMSE_E_per_atom=    1.70 meV, RMSE_F=    2.70 meV / A")
                results.write(json.dumps({{"loss": 0.001, "rmse_e_per_atom": 0.0017, "mae_e_per_atom": 0.0012,
                                           "rmse_f": 0.0027, "mae_f": 0.002, "mode": "eval", "epoch": epoch,
                                           "head": "Default"}}) + "\\n")
                Path(f"checkpoints/{{tag}}_epoch-{{epoch}}.pt").write_bytes(b"fake checkpoint")
        lines.append("2026-01-01 00:00:00.000 INFO: ===========RESULTS===========")
        lines.append(f"2026-01-01 00:00:00.000 INFO: Loaded Stage one model from epoch {{epoch}} for evaluation")
        text = "\\n".join(lines) + "\\n" + {FAKE_TABLES!r}
        Path("logs").mkdir(exist_ok=True)
        Path(f"logs/{{tag}}.log").write_text(text)
        print(text, flush=True)
        Path("argv.json").write_text(json.dumps(argv)) if args["--name"] == "mace" else None
        shutil.copyfile({str(model_source)!r}, args["--name"] + ".model")
    """
