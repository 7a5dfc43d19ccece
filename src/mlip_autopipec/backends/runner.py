"""Run a training backend's command-line tools (pacemaker, mace_run_train, ...) in a subprocess:
found where the user expects them,
logged to a file as they go, and killed (the whole process group) when they run out of time
or when the flow dies (mlip_autopipec.processes).
"""

from __future__ import annotations

import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from mlip_autopipec import processes
from mlip_autopipec.backends.base import BackendNotFound, TrainingTimeout

_KILL_GRACE_SECONDS = 5.0


def resolve_executable(name: str, explicit: str | os.PathLike | None = None, install_hint: str = "") -> Path:
    """`explicit` if given; else `name` next to the running interpreter (its venv); else on PATH.
    `install_hint` tells the user how to get the tool when it is nowhere."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise BackendNotFound(f"{name}: configured executable {path} does not exist or is not executable")
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BackendNotFound(f"{name} not found next to {sys.executable} nor on PATH. {install_hint}".strip())


def subprocess_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warning chatter
    env["MPLBACKEND"] = "Agg"  # pacemaker plots its reports; no display here
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as they are written, so progress is live
    return env


def run_logged(
    command: Sequence[str | os.PathLike],
    cwd: Path,
    log_path: Path,
    deadline: float,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run `command`, append its stdout+stderr to `log_path`, return its exit status.

    `deadline` is a time.monotonic() value; past it the process group is terminated, then killed,
    and TrainingTimeout is raised. `on_line` sees every output line, in the calling thread.
    """
    args = [str(part) for part in command]
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"\n$ {shlex.join(args)}\n")
        log.flush()
        process = processes.start(  # own process group, dies with this process
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=subprocess_environment(), text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_copy_lines, args=(process, log, lines), daemon=True)
        reader.start()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _terminate_group(process)
                    raise TrainingTimeout(f"{Path(args[0]).name} exceeded its time limit and was killed",
                                          log_tail(log_path), log_path)
                try:
                    line = lines.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    continue
                if line is None:  # output closed: the process is exiting
                    break
                if on_line is not None:
                    on_line(line)
            try:
                return process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _terminate_group(process)
                raise TrainingTimeout(f"{Path(args[0]).name} closed its output but did not exit in time",
                                      log_tail(log_path), log_path) from None
        finally:
            if process.poll() is None:  # an exception (a raising on_line, Ctrl-C) must not leave it running
                _terminate_group(process)
            processes.kill_group(process)  # whatever the tool left behind in its group
            reader.join(timeout=_KILL_GRACE_SECONDS)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return ""


def _copy_lines(process: subprocess.Popen, log, lines: queue.Queue) -> None:
    try:
        for line in process.stdout:
            log.write(line)
            log.flush()
            lines.put(line)
    finally:
        lines.put(None)


def _terminate_group(process: subprocess.Popen) -> None:
    processes.stop(process, _KILL_GRACE_SECONDS)
