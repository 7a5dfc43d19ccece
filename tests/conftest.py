"""Shared fixtures: the real DFT data in ../shared/data and an isolated Prefect home."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MLIP_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

pytest_plugins = ["tests.postgres", "tests.slurm", "tests.s3"]  # throw-away PostgreSQL, SLURM, S3 (moto) servers

# Before anything imports Prefect: keep its database, results and logs out of the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="mlip-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "Cu-I.extxyz").is_file():
        pytest.fail(f"reference data not found in {SHARED_DATA}; set MLIP_SHARED_DATA")
    return SHARED_DATA


# Commands the tests run as subprocesses (`python -m flows.x`, no PREFECT_API_URL) start the local
# Prefect server (flows/cli.py) in the background, under whichever PREFECT_HOME the test gave them.
# They inherit this tag, and so do the servers they start: the session stops exactly those at its end.
os.environ.setdefault("MLIP_TEST_SESSION", uuid.uuid4().hex)


@pytest.fixture(scope="session", autouse=True)
def _stop_the_local_prefect_servers():
    yield
    tag = f"MLIP_TEST_SESSION={os.environ['MLIP_TEST_SESSION']}".encode()
    leaders = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and b"prefect.server.api.server:create_app" in (proc / "cmdline").read_bytes()
                    and tag in (proc / "environ").read_bytes().split(b"\0")
                    and os.getpgid(int(proc.name)) == int(proc.name)):  # started by flows/cli.py: a group leader
                leaders.append(int(proc.name))
        except (OSError, ValueError):
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in leaders:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in leaders):
            time.sleep(0.1)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for every flow and task test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "structures.db"


# -- one real Pacemaker fit, shared by every test that needs a trained potential ---------------

N_STRUCTURES = 30  # 204 atoms of Cu-I, among them 64- and 96-atom phonon supercells


@pytest.fixture(scope="session")
def cu_manifest(shared_data, tmp_path_factory):
    """30 Cu-I structures exported as for a generation (Pacemaker format, 20% test)."""
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames

    frames = [frame for _, frame in read_labelled_frames(shared_data / "Cu-I.extxyz")
              if isinstance(frame, LabelledFrame)][:N_STRUCTURES]
    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, tmp_path_factory.mktemp("cu-export"), test_fraction=0.2, seed=0,
                          formats=["pacemaker", "extxyz"])


def _tiny_config(**overrides):
    """10 functions, up to 4-body: about 15 s on 2 cores, most of it TensorFlow starting up."""
    from mlip_autopipec.config.training import PacemakerConfig

    settings = dict(number_of_functions_per_element=10, nradmax_by_orders=[5, 2, 1],
                    lmax_by_orders=[0, 2, 1], maxiter=25, display_step=5, timeout_seconds=300)
    return PacemakerConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_config():
    """Builds the tiny test config; keyword arguments override its settings."""
    return _tiny_config


@dataclass
class TrainedGeneration:
    artifact: object  # PotentialArtifact
    config: object  # PacemakerConfig
    progress: list

    @property
    def directory(self) -> Path:
        return self.artifact.generation_dir


@pytest.fixture(scope="session")
def generation_1(cu_manifest, tiny_config, tmp_path_factory) -> TrainedGeneration:
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    config = tiny_config()
    events: list = []
    artifact = PacemakerTrainer().train(cu_manifest, config, tmp_path_factory.mktemp("campaign") / "gen-001",
                                        progress=events.append)
    return TrainedGeneration(artifact, config, events)


# -- a minority species: one Ni atom per Cu cell, EMT labels (issue 22) --------------------------

def doped_cu_cells(count: int, dopants: dict[str, int], seed: int = 0) -> list:
    """`count` LabelledFrames: 2x2x2 cubic Cu cells (32 atoms) with `dopants` (element -> atoms per
    cell) on random sites, strained by ~2% and rattled, labelled by EMT."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlip_autopipec.data.frames import LabelledFrame

    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        sites = rng.permutation(len(atoms))
        for element, number in dopants.items():
            atoms.symbols[sites[:number]] = element
            sites = sites[number:]
        atoms.set_cell(atoms.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        atoms.rattle(0.05, seed=1000 * seed + index)
        atoms.calc = EMT()
        frames.append(LabelledFrame(atoms.copy(), float(atoms.get_potential_energy()), atoms.get_forces().copy()))
    return frames


def export_for_training(frames, directory):
    """All `frames` as a training set (Pacemaker and extxyz formats, no test split)."""
    from mlip_autopipec.data.export import ExportItem, export_dataset

    items = [ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)]
    return export_dataset(items, directory, test_fraction=0.0, seed=0, formats=["pacemaker", "extxyz"])


@pytest.fixture(scope="session")
def one_ni(tiny_config, tmp_path_factory):
    """A real fit on six Cu31Ni cells: 186 Cu environments, 6 Ni environments for 10 functions,
    so Ni has no MaxVol active set. Returns (artifact, frames)."""
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    frames = doped_cu_cells(6, {"Ni": 1})
    work = tmp_path_factory.mktemp("one-ni")
    artifact = PacemakerTrainer().train(export_for_training(frames, work / "data"),
                                        tiny_config(maxiter=10, display_step=10), work / "gen-000")
    return artifact, frames
