"""Every child process the project starts (pacemaker, mace_run_train, the FairChem interpreter's
workers and model server, labelling workers): in a process group of its own, killed as a group,
and dead with its parent. `run_logged` is the one way to run a child to its end: output to a log
file (followed line by line), a time limit, cancellation, the whole tree killed when it is stopped,
and why it ended (`Ended.reason`). `run` is the same for a child whose output is wanted in memory.

Parent death: the child asks the kernel (Linux prctl PR_SET_PDEATHSIG) for SIGKILL the moment the
process that started it dies, `kill -9` included, so a killed flow never leaves a fit running or a
second fit writing beside a re-run. The kernel ties this to the *thread* that started the child:
start a child from the thread that waits for it (the runner and labelling jobs do). The FairChem
calculator's server may start from a worker thread; when that thread ends the server dies with it
and the calculator starts it again at its next call. Children that start children
of their own (a labelling worker running MPI ranks) call `watch_parent` instead, which takes their
whole process group down.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
DEFAULT_GRACE_S = 5.0
POLL_S = 0.2  # how often a cancellation flag and a followed log are looked at


def start(args: Sequence[str | os.PathLike], *, die_with_parent: bool = True, **popen_kwargs) -> subprocess.Popen:
    """`subprocess.Popen(args, **popen_kwargs)` in a new session (its own process group).

    With `die_with_parent` (the default) the kernel kills the child when this process dies.
    stdin defaults to /dev/null: a child never reads the flow's terminal.
    """
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    if die_with_parent and _LIBC is not None:
        popen_kwargs["preexec_fn"] = _parent_death_watch(os.getpid())
    return subprocess.Popen([str(part) for part in args], start_new_session=True, **popen_kwargs)


def _parent_death_watch(parent: int):
    prctl = _LIBC.prctl

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the watch was set
            os._exit(128 + signal.SIGKILL)

    return preexec


def stop(process: subprocess.Popen, grace_s: float = DEFAULT_GRACE_S, close_input: bool = False) -> None:
    """SIGTERM to the group (with `close_input`: close the child's stdin instead, for a server that
    exits at the end of its input), `grace_s` to obey (an MPI launcher stops its ranks), then SIGKILL
    to whatever of the group is left (children may outlive a leader that obeyed)."""
    if close_input:
        try:
            process.stdin.close()
        except OSError:  # a broken pipe: the server is gone or going
            pass
    else:
        signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    kill_group(process)
    process.wait()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the child's whole group: what a finished child may have left behind."""
    signal_group(process, signal.SIGKILL)


def signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is already gone
        pass


def run(args: Sequence[str | os.PathLike], timeout_s: float, **popen_kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` through `start`: on timeout the whole group is stopped and
    subprocess.TimeoutExpired raised; whatever the group left running is killed afterwards."""
    process = start(args, **popen_kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(process)
        raise
    except BaseException:  # Ctrl-C while waiting: the child must not stay
        stop(process)
        raise
    finally:
        kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class Cancellation(Protocol):
    """Anything that says a child should stop: a threading.Event, a labelling CancelFile."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Ended:
    """How a child run by `run_logged` ended: its exit status, and `stopped` ("timed out after 5 s",
    "was cancelled") when it was killed for that."""

    returncode: int
    stopped: str | None = None

    @property
    def reason(self) -> str:
        return self.stopped or exit_reason(self.returncode)


def run_logged(args: Sequence[str | os.PathLike], log_path: Path, timeout_s: float, *, cwd: Path | None = None,
               env: dict[str, str] | None = None, append: bool = True, on_line: Callable[[str], None] | None = None,
               cancel: Cancellation | None = None, die_with_parent: bool = True) -> Ended:
    """Run `args` to its end with stdout and stderr in `log_path` (appended to, after a `$ command`
    line; `append=False` starts the file afresh, without it), in the calling thread.

    Past `timeout_s`, or once `cancel` is set, the group is stopped (SIGTERM, then SIGKILL) and
    `Ended.stopped` says which. However it ends (an exception in `on_line`, Ctrl-C too), nothing of
    its group stays running. `on_line` sees each line the child writes, in this thread, while it runs
    and once more at its end.
    """
    args = [str(part) for part in args]
    with open(log_path, "ab" if append else "wb") as log:
        if append:
            log.write(f"\n$ {shlex.join(args)}\n".encode())
            log.flush()
        follow = None if on_line is None else LogFollower(log_path, on_line, offset=log.tell())
        process = start(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, die_with_parent=die_with_parent)
    deadline = time.monotonic() + timeout_s
    poll_s = POLL_S if cancel is not None or follow is not None else None
    stopped = None
    try:
        while process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = f"timed out after {timeout_s:g} s"
            elif cancel is not None and cancel.is_set():
                stopped = "was cancelled"
            if stopped:
                stop(process)
                break
            if follow is not None:
                follow()
            try:
                process.wait(timeout=remaining if poll_s is None else min(remaining, poll_s))
            except subprocess.TimeoutExpired:
                continue
    finally:
        if process.poll() is None:  # interrupted while waiting (an exception, Ctrl-C)
            stop(process)
        kill_group(process)  # whatever the child left behind: MPI ranks, helper daemons
    if follow is not None:
        follow(final=True)
    return Ended(process.returncode, stopped)


class LogFollower:
    """Hands each new line of a growing log file to `on_line`; `final=True` includes an unfinished
    last line. Lines end at LF, CRLF or CR (a progress bar redrawing itself), as in a text pipe."""

    _NEWLINE = re.compile(r"\r\n|\r|\n")

    def __init__(self, path: Path, on_line: Callable[[str], None], offset: int = 0):
        self.path, self.on_line, self.offset = path, on_line, offset

    def __call__(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        if not final:  # whole lines only: no line, nor UTF-8 character, is cut; a last CR may be half a CRLF
            data = data[:max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1]
        self.offset += len(data)
        lines = self._NEWLINE.split(data.decode("utf-8", errors="replace"))
        for line in lines[:-1] if lines[-1] == "" else lines:
            self.on_line(line)


def exit_reason(returncode: int) -> str:
    """'failed with exit code 3' or 'was killed by SIGKILL (exit code -9)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"failed with exit code {returncode}"


def alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(parent: int, poll_s: float = 1.0) -> None:
    """In a child started with `die_with_parent=False`: when process `parent` is gone (kill -9,
    OOM), SIGKILL this process's whole group, grandchildren included. A daemon thread polls."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        if os.getpgrp() == os.getpid():  # we lead our own group: take MPI ranks etc. along
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


__all__ = ["DEFAULT_GRACE_S", "Cancellation", "Ended", "LogFollower", "alive", "exit_reason", "kill_group", "run", "run_logged",
           "signal_group", "start", "stop", "watch_parent"]
