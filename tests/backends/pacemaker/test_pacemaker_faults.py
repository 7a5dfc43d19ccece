"""Failures a campaign meets: a crashing, hanging or lying `pacemaker`, a missing install, bad data.

A fake `pacemaker` (a shell script given as an explicit executable) stands in for the real one,
so these run in seconds; the real pace_yaml2yace and pace_activeset still run after it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mlip_autopipec.backends import BackendNotFound, DatasetError, PotentialArtifact, TrainingError, TrainingTimeout
from mlip_autopipec.backends.pacemaker import PacemakerTrainer
from mlip_autopipec.backends.runner import resolve_executable
from mlip_autopipec.config.training import PacemakerConfig
from mlip_autopipec.data.manifest import DatasetManifest


def fake_pacemaker(directory: Path, script: str) -> PacemakerTrainer:
    executable = directory / "pacemaker"
    executable.write_text("#!/bin/sh\n" + script)
    executable.chmod(0o755)
    return PacemakerTrainer(executables={"pacemaker": executable})


def _process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}  # a zombie has exited; only its parent has not reaped it yet


def test_crash_raises_training_error_with_the_log_tail(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, 'echo "Traceback (most recent call last):"\n'
                                       'echo "RuntimeError: boom in the fit" >&2\nexit 3\n')
    generation = tmp_path / "gen-001"
    with pytest.raises(TrainingError, match="exited with status 3") as failure:
        trainer.train(cu_manifest, PacemakerConfig(), generation)
    assert "RuntimeError: boom in the fit" in failure.value.log_tail
    assert failure.value.log_path == generation / "pacemaker.log"
    assert not (generation / "artifact.json").exists()


def test_a_retry_moves_the_failed_attempt_aside(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo attempt failed\nexit 1\n")
    generation = tmp_path / "gen-001"
    for _ in range(2):
        with pytest.raises(TrainingError):
            trainer.train(cu_manifest, PacemakerConfig(), generation)
    first_attempt = generation / "failed-attempts" / "attempt-1"
    assert (first_attempt / "input.yaml").is_file()
    assert "attempt failed" in (first_attempt / "pacemaker.log").read_text()
    assert (generation / "input.yaml").is_file()  # the second attempt's own files


def test_hang_is_killed_at_the_time_limit(cu_manifest, tmp_path):
    # The fake starts a child too: the whole process group must die, not just the shell.
    trainer = fake_pacemaker(tmp_path, 'echo "Start pacemaker"\nsleep 300 &\necho $! > sleeper.pid\nwait\n')
    generation = tmp_path / "gen-001"
    started = time.monotonic()
    with pytest.raises(TrainingTimeout, match="time limit") as failure:
        trainer.train(cu_manifest, PacemakerConfig(timeout_seconds=2), generation)
    assert time.monotonic() - started < 10
    assert "Start pacemaker" in failure.value.log_tail
    assert not _process_alive(int((generation / "sleeper.pid").read_text()))


def test_exit_without_output_potential_is_an_error(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo 'Fitting done'\nexit 0\n")
    with pytest.raises(TrainingError, match="wrote no output_potential.yaml"):
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")


def test_garbage_output_potential_is_an_error(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo 'this is not an ACE potential' > output_potential.yaml\nexit 0\n")
    with pytest.raises(TrainingError, match="pace_yaml2yace exited with status .*could not convert"):
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")


def test_missing_executable_is_backend_not_found(cu_manifest, tmp_path):
    trainer = PacemakerTrainer(executables={"pacemaker": tmp_path / "not-installed" / "pacemaker"})
    with pytest.raises(BackendNotFound, match="does not exist"):
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")
    with pytest.raises(BackendNotFound, match="nor on PATH"):
        resolve_executable("pacemaker-that-is-not-installed")


def test_empty_dataset_is_a_dataset_error(tmp_path):
    empty = DatasetManifest(seed=0, test_fraction=0.1, elements=[], counts={"train": 0}, files=[], source={})
    with pytest.raises(DatasetError, match="empty"):
        PacemakerTrainer().train(empty, PacemakerConfig(), tmp_path / "gen-001")
    assert not (tmp_path / "gen-001").exists()  # rejected before anything was written


def test_config_elements_that_miss_the_data_are_a_dataset_error(cu_manifest, tmp_path):
    with pytest.raises(DatasetError, match=r"contains \['Cu'\].*config does not cover"):
        PacemakerTrainer().train(cu_manifest, PacemakerConfig(elements=["Al"]), tmp_path / "gen-001")


def test_continuing_a_potential_without_the_data_elements_is_a_dataset_error(cu_manifest, tmp_path):
    aluminium = PotentialArtifact(backend="pacemaker", elements=["Al"], files={}, digests={}, version="test",
                                  dataset_digest="", config_digest="")
    with pytest.raises(DatasetError, match="initial potential does not cover"):
        PacemakerTrainer().train(cu_manifest, PacemakerConfig(), tmp_path / "gen-002",
                                 initial_potential=aluminium)


def test_dataset_changed_since_export_is_a_dataset_error(cu_manifest, tmp_path):
    copy = Path(shutil.copytree(cu_manifest.directory, tmp_path / "export"))
    with open(copy / "train.pckl.gzip", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(DatasetError, match="changed since export"):
        PacemakerTrainer().train(DatasetManifest.load(copy), PacemakerConfig(), tmp_path / "gen-001")


def test_the_decisive_traceback_is_shown_however_long_the_log_goes_on(cu_manifest, tmp_path):
    """A Python error early in a long log (as tensorpotential's IndexError in 58 KB of output) is in
    the error, and an exit with a status of the tool's own is not worth a retry."""
    trainer = fake_pacemaker(tmp_path, 'echo "Traceback (most recent call last):"\n'
                                       'echo "  File \\"tensorpotential/fit.py\\", line 12, in fit"\n'
                                       'echo "IndexError: list index out of range"\n'
                                       'for i in $(seq 1 300); do echo "shutting down worker $i"; done\nexit 1\n')
    with pytest.raises(TrainingError) as failure:
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")
    assert "IndexError: list index out of range" in str(failure.value)
    assert "shutting down worker 300" in failure.value.log_tail  # and the end of the log too
    assert not failure.value.retryable


def test_a_tool_killed_by_a_signal_may_be_retried(cu_manifest, tmp_path):
    trainer = fake_pacemaker(tmp_path, "echo fitting\nkill -9 $$\n")
    with pytest.raises(TrainingError, match="killed by signal 9") as failure:
        trainer.train(cu_manifest, PacemakerConfig(), tmp_path / "gen-001")
    assert failure.value.retryable


@pytest.mark.parametrize("elements, functions, enough", [(["Ni", "Cu", "Pd", "Ag", "Pt"], 15, 16),
                                                         (["C", "H", "O"], 3, 4)])
def test_a_basis_without_functions_is_refused_before_anything_runs(tmp_path, elements, functions, enough):
    """Pacemaker spreads the functions per element over every block; too few give 0 everywhere."""
    from mlip_autopipec.backends import TrainingConfigError
    from mlip_autopipec.backends.pacemaker.input_yaml import check_basis
    from tests.conftest import doped_cu_cells, export_for_training

    with pytest.raises(TrainingConfigError, match=f"number_of_functions_per_element: {functions} .* at least "
                                                  f"{enough} functions per element"):
        check_basis(PacemakerConfig(number_of_functions_per_element=functions), elements)
    check_basis(PacemakerConfig(number_of_functions_per_element=enough), elements)  # the advice works

    if len(elements) == 5:  # through the trainer: refused before the generation directory exists
        frames = doped_cu_cells(2, {"Ni": 4, "Pd": 4, "Ag": 4, "Pt": 4})
        manifest = export_for_training(frames, tmp_path / "data")
        with pytest.raises(TrainingConfigError):
            PacemakerTrainer().train(manifest, PacemakerConfig(number_of_functions_per_element=functions),
                                     tmp_path / "gen-000")
        assert not (tmp_path / "gen-000").exists()
