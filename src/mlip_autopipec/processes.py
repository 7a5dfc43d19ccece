"""Every child process the project starts (pacemaker, mace_run_train, the FairChem interpreter's
workers, labelling workers): in a process group of its own, killed as a group, and dead with its
parent.

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
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
DEFAULT_GRACE_S = 5.0


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


def stop(process: subprocess.Popen, grace_s: float = DEFAULT_GRACE_S) -> None:
    """SIGTERM to the group, `grace_s` to obey (an MPI launcher stops its ranks), then SIGKILL to
    whatever of the group is left (children may outlive a leader that obeyed SIGTERM)."""
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


def exit_reason(returncode: int) -> str:
    """'failed with exit code 3' or 'was killed by SIGKILL (exit code -9)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"failed with exit code {returncode}"


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


__all__ = ["DEFAULT_GRACE_S", "exit_reason", "kill_group", "run", "signal_group", "start", "stop", "watch_parent"]
