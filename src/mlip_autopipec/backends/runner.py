"""Run a backend's command-line tools (pacemaker, mace_run_train, ...) in a subprocess: found where
the user expects them, logged as they go, and killed with their process group when they run out of
time or the flow dies (mlip_autopipec.processes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mlip_autopipec import processes
from mlip_autopipec.backends.base import BackendNotFound, TrainingError, TrainingTimeout


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
    ended = processes.run_logged(command, log_path, deadline - time.monotonic(), cwd=cwd, env=subprocess_environment(),
                                 on_line=on_line)
    if ended.stopped is not None:
        raise TrainingTimeout(f"{Path(command[0]).name} exceeded its time limit and was killed",
                              log_tail(log_path), log_path)
    return ended.returncode


@contextlib.contextmanager
def backend_environment(variables: dict[str, str]) -> Iterator[None]:
    """backend_env for the training subprocess (set around it, restored after)."""
    previous = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def resolve_device(requested: str, other_interpreter: bool = False) -> str:
    """'cpu', or 'cuda' when CUDA is usable; a requested 'cuda' without CUDA falls back with a warning.
    `other_interpreter`: the tool's torch lives in another interpreter (FairChem) and cannot be asked
    from here, so CUDA counts as usable where an NVIDIA driver is visible."""
    if requested == "cpu":
        return "cpu"
    if _nvidia_driver_visible() if other_interpreter else _cuda_available():
        return "cuda"
    if requested == "cuda":
        warnings.warn("device 'cuda' requested but CUDA is not available here; training on the CPU instead",
                      RuntimeWarning, stacklevel=2)
    return "cpu"


def _cuda_available() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _nvidia_driver_visible() -> bool:
    return os.environ.get("CUDA_VISIBLE_DEVICES", None) != "" and shutil.which("nvidia-smi") is not None


def log_tail(path: Path, lines: int = 40) -> str:
    """What a person needs from a failed tool's log: its last Python traceback (the decisive lines,
    however early in the log they are), then the log's last `lines` lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return ""
    log_lines = text.splitlines()
    tail = log_lines[-lines:]
    traceback = _last_traceback(log_lines[:len(log_lines) - len(tail)])
    if not traceback:
        return "\n".join(tail).rstrip()
    return "\n".join([*traceback, "...", *tail]).rstrip()


def _last_traceback(log_lines: list[str], frames: int = 12) -> list[str]:
    """The last "Traceback (most recent call last):" block: its header, its last frames and the
    exception line(s) that end it."""
    starts = [index for index, line in enumerate(log_lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return []
    block = [log_lines[starts[-1]]]
    for line in log_lines[starts[-1] + 1:]:
        block.append(line)
        if line and not line[0].isspace():  # the exception line ends the block
            break
    if len(block) > frames + 2:
        block = [block[0], "  ...", *block[-frames:]]
    return block


def tool_failed(tool: str, status: int, log_path: Path, failure: str = "") -> TrainingError:
    """The error for a tool that exited with `status` (worded by processes.exit_reason). Killed by a
    signal (the kernel's OOM killer, a crash): another attempt may succeed. An exit status of its own
    (a Python exception, a bad setting): it will fail the same way again, so it is not retried."""
    return TrainingError(f"{tool} {processes.exit_reason(status)}" + (f": {failure}" if failure else ""),
                         log_tail(log_path), log_path, retryable=status < 0)
