"""An ASE calculator for a FairChem checkpoint, which lives in the other interpreter: `worker.py serve`
runs there once, loads the checkpoint into fairchem's OCPCalculator and answers one JSON line per
structure, so an MD pays the start-up (~10 s) once. `close()` (a `with` block, garbage collection)
ends the server.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import threading
import weakref
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, CalculatorError, all_changes

from mlip_autopipec import processes
from mlip_autopipec.backends.base import BackendError, PotentialArtifact
from mlip_autopipec.backends.fairchem.interpreter import WORKER, find_python, worker_environment
from mlip_autopipec.backends.runner import log_tail

class FairChemCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, checkpoint: str | os.PathLike, python: str | os.PathLike | None = None,
                 cpu: bool = True, env: dict[str, str] | None = None, log_path: str | os.PathLike | None = None,
                 start_timeout: float = 600.0, **kwargs):
        super().__init__(**kwargs)
        self.checkpoint = Path(checkpoint).resolve()
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"{self.checkpoint}: no such FairChem checkpoint")
        self.python = find_python(python)
        self.cpu = cpu
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else self.checkpoint.with_suffix(".server.log")
        self.start_timeout = start_timeout
        self._process: subprocess.Popen | None = None
        self._log = None
        self._lock = threading.Lock()

    # -- the server -------------------------------------------------------------------------

    def _ensure_started(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8")
        command = [str(self.python), str(WORKER), "serve", "--checkpoint", str(self.checkpoint)]
        if self.cpu:
            command.append("--cpu")
        self._log.write(f"\n$ {' '.join(command)}\n")
        self._log.flush()
        # Dies with this process; it also exits at the end of its input (our end of the pipe closes).
        self._process = processes.start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, bufsize=1, env=worker_environment(self.env))
        weakref.finalize(self, _stop, self._process)
        atexit.register(_stop, self._process)
        greeting = self._read_reply(self.start_timeout)
        if not greeting.get("ready"):
            raise BackendError(f"FairChem server for {self.checkpoint} did not start: "
                               f"{greeting.get('error', greeting)}\n--- {self.log_path} ---\n{log_tail(self.log_path)}")
        return self._process

    def _read_reply(self, timeout: float) -> dict:
        """One JSON line from the server, or an error naming its log when it dies or stays silent."""
        process = self._process
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            _stop(process)
            raise BackendError(f"FairChem server for {self.checkpoint} gave no answer in {timeout:.0f} s; "
                               f"log: {self.log_path}\n{log_tail(self.log_path)}")
        line = result[0] if result else ""
        if not line:
            process.wait(timeout=processes.DEFAULT_GRACE_S)
            raise BackendError(f"FairChem server for {self.checkpoint} {processes.exit_reason(process.returncode)}\n"
                               f"--- {self.log_path} ---\n{log_tail(self.log_path)}")
        return json.loads(line)

    def close(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- ASE ----------------------------------------------------------------------------------

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        request = {"numbers": self.atoms.numbers.tolist(), "positions": self.atoms.positions.tolist(),
                   "cell": np.asarray(self.atoms.cell).tolist(), "pbc": self.atoms.pbc.tolist(),
                   "properties": list(properties)}
        with self._lock:
            process = self._ensure_started()
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            reply = self._read_reply(self.start_timeout)
        if "error" in reply:
            raise CalculatorError(f"FairChem model {self.checkpoint}: {reply['error']}")
        self.results = {"energy": reply["energy"], "free_energy": reply["energy"],
                        "forces": np.asarray(reply["forces"], dtype=float)}
        if "stress" in reply:
            self.results["stress"] = np.asarray(reply["stress"], dtype=float)


def _stop(process: subprocess.Popen) -> None:
    """Close the server's input (it exits at end of input), then make sure its group is gone."""
    if process.poll() is None:
        processes.stop(process, close_input=True)


def make_calculator(artifact: PotentialArtifact, python: str | os.PathLike | None = None,
                    cpu: bool = True) -> FairChemCalculator:
    """The calculator of a FairChem generation (its `checkpoint` file, verified against the digests)."""
    artifact.verify()
    return FairChemCalculator(artifact.path("checkpoint"), python=python, cpu=cpu,
                              log_path=(artifact.generation_dir or Path(".")) / "calculator_server.log")
