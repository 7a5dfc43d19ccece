"""Every child dies with its flow (issue 14.1): real processes, real `kill -9`, real pacemaker.

The flow stand-in is a Python process in a process group of its own, as a shell or a Prefect
worker would start it; the test kills that whole group with SIGKILL, which never reaches a child
in another session — only the parent-death watch of mlip_autopipec.processes does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def _processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is `directory` (pacemaker runs in its generation dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory and _alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _start_flow(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=PROJECT_ROOT,
                            start_new_session=True)


def _kill_flow(flow: subprocess.Popen) -> None:
    os.killpg(flow.pid, signal.SIGKILL)
    flow.wait()


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_child_and_its_own_children_die_with_a_killed_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    flow = _start_flow(f"""
        import subprocess, time
        from mlip_autopipec import processes
        child = processes.start(["sh", "-c", "echo $$ > {pid_file}; sleep 300"])
        time.sleep(300)
    """)
    try:
        assert _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 20)
        child = int(pid_file.read_text())
        assert _alive(child)
        assert os.getpgid(child) != os.getpgid(flow.pid)  # its own group: the kill below misses it
    finally:
        _kill_flow(flow)
    assert _wait_for(lambda: not _alive(child), 5), "the child outlived its parent"


def test_without_the_watch_a_child_would_survive(tmp_path):
    """The control: the same child without the parent-death watch outlives the kill."""
    pid_file = tmp_path / "child.pid"
    flow = _start_flow(f"""
        import time
        from mlip_autopipec import processes
        processes.start(["sh", "-c", "echo $$ > {pid_file}; sleep 300"], die_with_parent=False)
        time.sleep(300)
    """)
    try:
        assert _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 20)
        child = int(pid_file.read_text())
    finally:
        _kill_flow(flow)
    time.sleep(1)
    try:
        assert _alive(child)
    finally:
        os.killpg(child, signal.SIGKILL)


def test_run_stops_the_whole_group_at_its_timeout(tmp_path):
    from mlip_autopipec import processes

    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    try:
        processes.run(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], timeout_s=1)
    except subprocess.TimeoutExpired:
        pass
    else:
        raise AssertionError("no timeout")
    assert time.monotonic() - started < 10
    assert not _alive(int(pid_file.read_text()))


def test_run_logged_follows_the_log_and_says_why_the_child_ended(tmp_path):
    """The one loop every logged child runs in: lines (CR-redrawn ones too) reach on_line in order,
    the log keeps the command line, and the exit status or the stop is reported."""
    import threading

    from mlip_autopipec import processes

    log, lines = tmp_path / "tool.log", []
    ended = processes.run_logged(["sh", "-c", "printf 'a\\nb\\rc\\n'; sleep 0.5; printf 'last'; exit 3"], log, 30,
                                 on_line=lines.append)
    assert (ended.returncode, ended.stopped, ended.reason) == (3, None, "failed with exit code 3")
    assert lines == ["a", "b", "c", "last"]
    assert log.read_text().startswith("\n$ sh -c ")

    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    ended = processes.run_logged(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], log, 1, append=False)
    assert ended.stopped == "timed out after 1 s" and ended.reason == ended.stopped
    assert time.monotonic() - started < 10
    assert _wait_for(lambda: not _alive(int(pid_file.read_text())), 5), "the grandchild outlived the timeout"
    assert not log.read_text().startswith("\n$")  # append=False: a fresh log without the command line

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    ended = processes.run_logged(["sleep", "300"], log, 60, cancel=cancel)
    assert ended.stopped == "was cancelled" and ended.returncode < 0


def test_a_redrawn_progress_line_arrives_before_the_next_newline(tmp_path):
    """A tool that redraws one line with CR (tqdm) is followed as it redraws, not at its next LF;
    a CR at the very end waits, since it may be the first half of a CRLF."""
    from mlip_autopipec.processes import LogFollower

    log, lines = tmp_path / "tool.log", []
    follow = LogFollower(log, lines.append)
    log.write_bytes(b"epoch 1: 10%\repoch 1: 20%\repoch 1: 30")
    follow()
    assert lines == ["epoch 1: 10%", "epoch 1: 20%"]
    with open(log, "ab") as handle:
        handle.write(b"%\r")
    follow()
    assert lines == ["epoch 1: 10%", "epoch 1: 20%"]
    with open(log, "ab") as handle:
        handle.write(b"\ndone\n")
    follow()
    assert lines == ["epoch 1: 10%", "epoch 1: 20%", "epoch 1: 30%", "done"]


def test_a_killed_training_flow_leaves_no_pacemaker_and_a_rerun_fits_alone(cu_manifest, tiny_config, tmp_path):
    """kill -9 of the process group running a real fit: pacemaker dies with it; the re-run in the
    same generation directory moves the killed attempt aside and nothing writes beside it."""
    generation = (tmp_path / "gen-001").resolve()
    config = tiny_config(maxiter=2000, display_step=5)  # far longer than the test waits
    flow = _start_flow(f"""
        from pathlib import Path
        from mlip_autopipec.backends.pacemaker import PacemakerTrainer
        from mlip_autopipec.config.training import PacemakerConfig
        from mlip_autopipec.data.manifest import DatasetManifest
        manifest = DatasetManifest.load(Path({str(cu_manifest.directory)!r}))
        PacemakerTrainer().train(manifest, PacemakerConfig.model_validate_json({config.model_dump_json()!r}),
                                 Path({str(generation)!r}))
    """)
    try:
        assert _wait_for(lambda: bool(_processes_in(generation)), 60), "pacemaker never started"
        # well into the fit: TensorFlow loaded, iterations logged
        assert _wait_for(lambda: "Iteration" in (generation / "pacemaker.log").read_text(errors="replace")
                         if (generation / "pacemaker.log").is_file() else False, 120)
        fitters = _processes_in(generation)
    finally:
        _kill_flow(flow)
    assert fitters
    assert _wait_for(lambda: not any(_alive(pid) for pid in fitters), 5), "pacemaker outlived its flow"

    from mlip_autopipec.backends.pacemaker import PacemakerTrainer

    killed_log = (generation / "pacemaker.log").read_text(errors="replace")
    artifact = PacemakerTrainer().train(cu_manifest, tiny_config(), generation)
    assert artifact.generation_dir == generation
    attempt = generation / "failed-attempts" / "attempt-1"
    assert (attempt / "pacemaker.log").read_text(errors="replace") == killed_log  # untouched since the kill
    assert "maxiter: 2000" not in (generation / "input.yaml").read_text()
    assert _processes_in(generation) == []


def test_kill_9_of_a_flows_train_group_leaves_nothing_running(tmp_path, shared_data):
    """The issue's own case: `python -m flows.train` (with its temporary Prefect server) killed
    with SIGKILL to its process group while pacemaker fits."""
    import ase.io
    import yaml

    data = tmp_path / "cu.extxyz"
    ase.io.write(data, [a for a in ase.io.read(shared_data / "Cu-I.extxyz", ":") if len(a) <= 2][:30])
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"campaign": "kill", "training": {
        "backend": "pacemaker", "number_of_functions_per_element": 10, "nradmax_by_orders": [5, 2],
        "lmax_by_orders": [0, 1], "maxiter": 5000, "repulsion": None}}))
    out = (tmp_path / "out").resolve()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    flow = subprocess.Popen([sys.executable, "-m", "flows.train", "--config", str(config), "--data", str(data),
                             "--out", str(out)], cwd=PROJECT_ROOT, start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    generation = out / "generations" / "gen-000"
    try:
        assert _wait_for(lambda: bool(_processes_in(generation)), 240), "pacemaker never started"
        fitters = _processes_in(generation)
        time.sleep(3)
    finally:
        _kill_flow(flow)
    assert _wait_for(lambda: not any(_alive(pid) for pid in fitters), 5), "pacemaker outlived flows.train"
