"""Finding the FairChem interpreter and running the worker (worker.py) in it.

The interpreter is, in this order: the one given explicitly (run.yaml `backend_python`, a
trainer's `python=`), $MLIP_FAIRCHEM_PYTHON, or `.venv-fairchem/bin/python` at the project root
(where scripts/setup_fairchem.sh puts it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mlip_autopipec import processes
from mlip_autopipec.backends.base import BackendError, BackendNotFound
from mlip_autopipec.backends.runner import log_tail, subprocess_environment

ENV_VARIABLE = "MLIP_FAIRCHEM_PYTHON"
PROJECT_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_VENV = PROJECT_ROOT / ".venv-fairchem"
WORKER = Path(__file__).resolve().with_name("worker.py")
INSTALL_HINT = (f"Build it with scripts/setup_fairchem.sh (creates {DEFAULT_VENV}), or point "
                f"{ENV_VARIABLE} / run.yaml backend_python at a Python with fairchem-core 1.10.")


class WorkerError(BackendError):
    """The worker in the FairChem interpreter failed; the message carries its error and log tail."""


def find_python(explicit: str | os.PathLike | None = None) -> Path:
    """The FairChem interpreter; BackendNotFound (saying how to build one) when there is none."""
    if explicit is not None:
        where, path = "backend_python", Path(explicit)
    elif os.environ.get(ENV_VARIABLE):
        where, path = ENV_VARIABLE, Path(os.environ[ENV_VARIABLE])
    else:
        where, path = "the default FairChem environment", DEFAULT_VENV / "bin" / "python"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise BackendNotFound(f"FairChem interpreter {path} ({where}) does not exist or is not executable. "
                          + INSTALL_HINT)


def fairchem_entry_point(python: Path) -> Path:
    """`fairchem` (fairchem-core 1.10's console script) beside the interpreter."""
    entry = python.parent / "fairchem"
    if not (entry.is_file() and os.access(entry, os.X_OK)):
        raise BackendNotFound(f"{entry}: no `fairchem` command beside {python}; is fairchem-core 1.10 installed "
                              "there? " + INSTALL_HINT)
    return entry


def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = subprocess_environment()
    # The main process's virtualenv and PYTHONPATH must not leak into the other interpreter.
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def call_worker(python: Path, arguments: list[str], log_path: Path, timeout: float,
                env: dict[str, str] | None = None) -> dict:
    """Run one worker command; its stderr goes to `log_path`, its JSON answer is returned."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(WORKER), *arguments]
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        try:
            completed = processes.run(command, timeout, stdout=subprocess.PIPE, stderr=log, text=True,
                                      env=worker_environment(env))
        except subprocess.TimeoutExpired:
            raise WorkerError(f"FairChem worker `{arguments[0]}` exceeded {timeout:.0f} s; log: {log_path}") from None
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {"error": f"unreadable answer {lines[-1]!r:.200}"}
    if completed.returncode != 0 or "error" in answer or not answer:
        reason = answer.get("error") or f"no answer; it {processes.exit_reason(completed.returncode)}"
        raise WorkerError(f"FairChem worker `{arguments[0]}` failed with {python}: {reason}\n"
                          f"--- last lines of {log_path} ---\n{log_tail(log_path)}")
    return answer
