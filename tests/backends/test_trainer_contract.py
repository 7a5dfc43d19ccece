"""The Trainer contract, one suite for every backend (backends/template.py): faults, retries,
reuse (the digests `generations.find_matching` compares), resume into the same directory, and the
lock that keeps two live trainings out of one generation directory.

Stand-in tools (a shell script as the backend's executable) make these run in seconds. FairChem's
trainer needs its own interpreter; where there is none, its tool-running cases skip with the
reason, and what needs no tool (the artifact's digests, the lock) still runs for it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlip_autopipec.backends import (
    BackendNotFound,
    DatasetError,
    GenerationExistsError,
    TrainingError,
    TrainingTimeout,
)
from mlip_autopipec.backends.configs import parse_training_config
from mlip_autopipec.backends.runner import resolve_executable
from mlip_autopipec.backends.template import LOCK_NAME, GenerationBusyError, TrainingRun, claim_generation_dir
from mlip_autopipec.data.manifest import DatasetManifest
from mlip_autopipec.generations import find_matching
from tests.backends.fakes import fake_successful_run, write_fake_mace

BACKENDS = ["pacemaker", "mace", "equiformer_v2"]


@dataclass
class Contender:
    """One backend as the contract sees it."""

    name: str
    manifest: DatasetManifest
    config: object
    log_name: str
    tool: str  # the executable a stand-in replaces
    trainer_class: type
    data_format: str

    def trainer(self, executable: Path | None = None):
        if self.name == "equiformer_v2":
            return self.trainer_class(python=executable)
        return self.trainer_class(executables={} if executable is None else {self.tool: executable})

    def fake(self, directory: Path, script: str):
        """The trainer with its tool replaced by the shell script `script`."""
        if self.name == "equiformer_v2":
            pytest.skip("FairChem's tool is its own interpreter, found and asked before it trains; "
                        "its faults are covered by tests/backends/fairchem with a real one")
        directory.mkdir(parents=True, exist_ok=True)
        executable = directory / self.tool
        executable.write_text("#!/bin/sh\n" + script)
        executable.chmod(0o755)
        return self.trainer(executable)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Contender:
    name = request.param
    if name == "pacemaker":
        from mlip_autopipec.backends.pacemaker import PacemakerTrainer

        return Contender(name, request.getfixturevalue("cu_manifest"), parse_training_config({"backend": name}),
                         "pacemaker.log", "pacemaker", PacemakerTrainer, "pacemaker")
    if name == "mace":
        from mlip_autopipec.backends.mace import MaceTrainer

        return Contender(name, request.getfixturevalue("mace_manifest"),
                         parse_training_config({"backend": name, "device": "cpu"}), "mace_train.log",
                         "mace_run_train", MaceTrainer, "mace")
    from mlip_autopipec.backends.fairchem import FairChemTrainer

    return Contender(name, request.getfixturevalue("mace_manifest"),
                     parse_training_config({"backend": name, "device": "cpu"}), "fairchem_train.log", "python",
                     FairChemTrainer, "extxyz")


def _process_alive(pid: int, within_s: float = 2.0) -> bool:
    """Still running after `within_s` (a killed process takes a moment to go)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        if state in {"Z", "X"}:  # a zombie has exited; only its parent has not reaped it yet
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


# -- faults --------------------------------------------------------------------------------------


def test_a_crash_is_a_training_error_with_the_decisive_lines(backend, tmp_path):
    """A Python error early in a long log is in the error, with the log's end; an exit status of
    the tool's own would fail the same way again, so it is not worth a retry."""
    trainer = backend.fake(tmp_path / "bin", 'echo "Traceback (most recent call last):"\n'
                                             'echo "RuntimeError: boom in the fit" >&2\n'
                                             'for i in $(seq 1 300); do echo "shutting down worker $i"; done\nexit 3\n')
    generation = tmp_path / "gen-001"
    with pytest.raises(TrainingError, match="failed with exit code 3") as failure:
        trainer.train(backend.manifest, backend.config, generation)
    assert "RuntimeError: boom in the fit" in str(failure.value)
    assert "shutting down worker 300" in failure.value.log_tail
    assert failure.value.log_path == generation / backend.log_name
    assert not failure.value.retryable
    assert not (generation / "artifact.json").exists()


def test_a_tool_killed_by_a_signal_may_be_retried(backend, tmp_path):
    trainer = backend.fake(tmp_path / "bin", "echo fitting\nkill -9 $$\n")
    with pytest.raises(TrainingError, match=r"was killed by SIGKILL \(exit code -9\)") as failure:
        trainer.train(backend.manifest, backend.config, tmp_path / "gen-001")
    assert failure.value.retryable


def test_a_hang_is_killed_with_its_children_at_the_time_limit(backend, tmp_path):
    trainer = backend.fake(tmp_path / "bin", 'echo "started"\nsleep 300 &\necho $! > sleeper.pid\nwait\n')
    generation = tmp_path / "gen-001"
    started = time.monotonic()
    with pytest.raises(TrainingTimeout, match="time limit") as failure:
        trainer.train(backend.manifest, backend.config.model_copy(update={"timeout_seconds": 2}), generation)
    assert time.monotonic() - started < 15
    assert "started" in failure.value.log_tail
    assert not _process_alive(int((generation / "sleeper.pid").read_text()))


def test_a_missing_tool_is_backend_not_found_before_anything_is_written(backend, tmp_path):
    with pytest.raises(BackendNotFound, match="does not exist"):
        backend.trainer(tmp_path / "not-installed" / backend.tool).train(
            backend.manifest, backend.config, tmp_path / "gen-001")
    assert not (tmp_path / "gen-001").exists()
    with pytest.raises(BackendNotFound, match="nor on PATH"):
        resolve_executable(f"{backend.tool}-that-is-not-installed")
    if backend.name != "equiformer_v2":
        with pytest.raises(ValueError, match="unknown .* tool"):
            backend.trainer_class(executables={"no-such-tool": "x"})


def test_an_empty_or_changed_dataset_is_a_dataset_error_before_anything_is_written(backend, tmp_path):
    trainer = backend.fake(tmp_path / "bin", "exit 0\n")
    empty = DatasetManifest(seed=0, test_fraction=0.1, elements=[], counts={"train": 0}, files=[], source={})
    with pytest.raises(DatasetError, match="empty"):
        trainer.train(empty, backend.config, tmp_path / "gen-001")
    copy = DatasetManifest.load(shutil.copytree(backend.manifest.directory, tmp_path / "export"))
    with open(copy.path_of(backend.data_format, "train"), "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(DatasetError, match="changed since export"):
        trainer.train(copy, backend.config, tmp_path / "gen-001")
    assert not (tmp_path / "gen-001").exists()


# -- retries and resume ----------------------------------------------------------------------------


def test_a_retry_moves_the_failed_attempt_aside_then_finishes_once(backend, tmp_path, request):
    generation = tmp_path / "gen-001"
    for attempt in range(2):
        with pytest.raises(TrainingError):
            backend.fake(tmp_path / "bin", f"echo attempt {attempt} failed\nexit 1\n").train(
                backend.manifest, backend.config, generation)
    assert "attempt 0 failed" in (generation / "failed-attempts" / "attempt-1" / backend.log_name).read_text()
    assert "attempt 1 failed" in (generation / backend.log_name).read_text()

    if backend.name == "pacemaker":  # a stand-in pacemaker "fits" by handing over what a real fit wrote
        fitted = request.getfixturevalue("generation_1").directory
        outputs = ("output_potential.yaml", "fitting_data_info.pckl.gzip", "metrics.txt", "test_metrics.txt")
        succeed = backend.fake(tmp_path / "ok", "".join(f"cp {fitted / name} .\n" for name in outputs
                                                        if (fitted / name).is_file()))
    else:
        model = tmp_path / "source.model"
        model.write_bytes(b"not really a model")
        (tmp_path / "ok").mkdir()
        succeed = backend.trainer(write_fake_mace(tmp_path / "ok", fake_successful_run(model)))
    artifact = succeed.train(backend.manifest, backend.config, generation)
    artifact.verify()
    assert (generation / "failed-attempts" / "attempt-2" / backend.log_name).is_file()  # evidence kept
    assert artifact.config_digest == backend.config.digest()
    with pytest.raises(GenerationExistsError):
        succeed.train(backend.manifest, backend.config, generation)


# -- reuse: the same command twice trains once ---------------------------------------------------


def test_the_artifact_carries_the_digests_find_matching_compares(backend, tmp_path):
    """What `tasks.training.train_task` reuses: artifact.config_digest is config.digest() for every
    backend (FairChem once stored a digest mixed with its native config, so it never matched)."""
    generation = tmp_path / "generations" / "gen-000"
    trainer = backend.trainer()
    run = TrainingRun(trainer, backend.manifest, backend.config, generation, None, None, 1)
    with claim_generation_dir(run.generation_dir):
        (generation / backend.log_name).write_text("trained\n")
        (generation / "model.bin").write_bytes(b"weights")
        run.finish({"model": "model.bin"}, {"rmse": 1.0}, {}, "test")
    found = find_matching(tmp_path / "generations", backend.manifest.digest, backend.config.digest(), None)
    assert found is not None and found.generation_dir == generation
    changed = backend.config.model_copy(update={"seed": 7})
    assert find_matching(tmp_path / "generations", backend.manifest.digest, changed.digest(), None) is None
    unwatched = backend.config.model_copy(update={"timeout_seconds": 5})  # how a run is watched: the same potential
    assert find_matching(tmp_path / "generations", backend.manifest.digest, unwatched.digest(), None) is not None


# -- one live training per generation directory --------------------------------------------------

HOLDER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from mlip_autopipec.backends.template import claim_generation_dir
    with claim_generation_dir(Path(sys.argv[1])):
        print("claimed", flush=True)
        time.sleep(60)
""")


def test_a_second_live_training_into_the_same_directory_fails_clearly(backend, tmp_path):
    generation = tmp_path / "gen-001"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(generation)], stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(Path(__file__).parents[2] / "src"), "PATH": "/usr/bin:/bin"})
    try:
        assert holder.stdout.readline().strip() == "claimed"
        trainer = backend.trainer() if backend.name == "equiformer_v2" else backend.fake(tmp_path / "bin", "exit 0\n")
        if backend.name == "equiformer_v2":  # no interpreter to check first: the claim itself is the contract
            with pytest.raises(GenerationBusyError, match="another training"), claim_generation_dir(generation):
                pass
        else:
            with pytest.raises(GenerationBusyError, match=f"another training .*{LOCK_NAME}"):
                trainer.train(backend.manifest, backend.config, generation)
        assert list(generation.iterdir()) == [generation / LOCK_NAME]  # the holder's directory is untouched
    finally:
        holder.kill()
        holder.wait()
    with claim_generation_dir(generation) as failed_attempt:  # free again once the holder is gone
        assert failed_attempt is None
