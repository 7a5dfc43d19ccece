"""Labelling on a SLURM cluster: one `sbatch` job per batch of structures, watched until it ends.

    report = label_pending_slurm(store, spec, SlurmSettings(partition="compute", ntasks=4,
                                                            mpi_command="srun"), workdir="/scratch/jobs")

The caller's process claims rows (`LabelingRun`, as every executor does), writes each batch to
workdir/<job name>-<tag>/ (batch.json, structure-<id>/structure.traj, job.sh) and submits job.sh
with `sbatch --parsable`. The job (labeling/batch_job.py) labels its structures one after another,
each in a worker process under `mpi_command`, and leaves one outcome file per structure. This
process polls `squeue` (then `sacct`, for jobs squeue has forgotten) every `poll_s` and, once a job
has ended in whatever state, stores the outcome of each of its structures:

* labelled: the labels go to the store (completed);
* failed inside the job (crash, per-structure timeout, unusable labels): failed with the reason;
* no outcome (the job was cancelled, ran past its walltime, lost its node, was killed for memory):
  failed with the job's id, name, final state and reason.

Failures with attempts left go back to pending and into a later batch; the store counts the
attempts. A job still pending after `pending_timeout_s` (held, no resources, drained nodes) is
cancelled and fails its structures the same way. Only the submitting process writes to the store,
and only after the job has ended, so a late job cannot store labels twice, and the compute nodes
need the shared job directory but no route to the store. Jobs are submitted with --no-requeue:
SLURM's own requeue would rerun finished structures; retries here are per structure.

A job sbatch refuses (wrong partition, account, walltime over the limit) fails its structures
with sbatch's message and ends the submitting for this call; the other rows stay pending.
Interrupted (Ctrl-C, a cancelled Prefect task), the jobs in flight are cancelled with `scancel`, what
they finished is stored and the rest is failed (retried next time), then the interrupt goes on; a batch
interrupted while being written or submitted fails its rows too (and its job, if sbatch took it, is
cancelled). Each batch directory gets the job id (job_id) as soon as sbatch returns it and a
`finished` mark once its outcomes are stored: killed outright, this process leaves its jobs findable,
and the next call with recover_running scancels them before their rows are labelled again. squeue
failing for another reason than an unknown job id (slurmctld down) fails no job: the poll waits.
The SLURM commands run without this process's secrets (job_environment): sbatch passes its
environment on to the job and slurmctld keeps it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np

from mlip_autopipec.calculators import CalculatorSpec
from mlip_autopipec.config.execution import SlurmSettings
from mlip_autopipec.data.frames import LabelledFrame
from mlip_autopipec.data.validation import DEFAULT_MIN_DISTANCE
from mlip_autopipec.files import atomic_write_text
from mlip_autopipec.labeling.batch import (DEFAULT_TIMEOUT_S, Attempt, LabelingRun, LabelReport, check_settings,
                                           job_root)
from mlip_autopipec.labeling.batch_job import BATCH_FILE, OUTCOME_FILE, structure_dir
from mlip_autopipec.labeling.job_files import RESULT_FILE, STRUCTURE_FILE
from mlip_autopipec.store import Status, StatusError, StructureStore

log = logging.getLogger(__name__)

# Job states after which nothing of the job runs any more (squeue --states=all / sacct).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
_FORGOTTEN_GRACE_S = 60.0  # a job neither squeue nor sacct knows any more has ended (or never existed)
_INTERRUPT_WAIT_S = 30.0  # after scancel on interrupt: how long to wait for the jobs to end
JOB_ID_FILE = "job_id"  # in the batch directory: the SLURM job id, written as soon as sbatch returned it
FINISHED_FILE = "finished"  # in the batch directory: the submitting process stored the job's outcomes


class SlurmError(RuntimeError):
    """A SLURM command failed (sbatch refused a job, squeue could not reach slurmctld)."""


@dataclass(frozen=True)
class JobState:
    state: str  # PENDING, RUNNING, COMPLETED, TIMEOUT, ... (squeue's %T)
    reason: str = ""  # squeue's %r: why pending, or why it ended (None when there is nothing to say)


class SlurmCommands:
    """sbatch, squeue, sacct, scancel, scontrol as `settings.commands` names them (default: on PATH)."""

    def __init__(self, settings: SlurmSettings):
        self.settings = settings

    def command(self, name: str) -> list[str]:
        return shlex.split(self.settings.commands.get(name, name))

    def _run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run([*self.command(name), *args], capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=120, env=job_environment())
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{name}: {exc}") from exc
        if check and result.returncode != 0:
            raise SlurmError(f"{name} {' '.join(args)} failed ({result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-1000:]}")
        return result

    def submit(self, script: Path, log: Path) -> str:
        """sbatch the script, its output to `log`; returns the job id. (The log path goes on the command
        line: an #SBATCH line cannot hold a path with spaces.)"""
        output = self._run("sbatch", "--parsable", f"--output={log}", str(script)).stdout.strip()
        job_id = output.split(";")[0].strip()  # --parsable: "id" or "id;cluster"
        if not job_id.isdigit():
            raise SlurmError(f"sbatch {script} printed no job id: {output!r}")
        return job_id

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """The state of each job SLURM still knows: squeue (live and recently ended jobs), then sacct.
        Raises SlurmError when squeue fails for another reason than a job id it does not know
        (slurmctld down or unreachable): then nothing can be said about any job."""
        found: dict[str, JobState] = {}
        if not job_ids:
            return found
        result = self._run("squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}",
                           "--format=%i|%T|%r", check=False)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            if "Invalid job id" not in message:
                raise SlurmError(f"squeue failed ({result.returncode}): {message[-1000:]}")
            if len(job_ids) > 1:  # one forgotten id fails the whole query
                for job_id in job_ids:
                    found.update(self.states([job_id]))
                return found
        for line in result.stdout.splitlines():
            job_id, state, reason = (line.split("|") + ["", ""])[:3]
            if job_id.strip() in job_ids:
                found[job_id.strip()] = JobState(state.strip(), reason.strip())
        for job_id in set(job_ids) - set(found):
            accounted = self._run("sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                                  "--format=JobID,State,Reason", check=False)
            for line in accounted.stdout.splitlines():
                jid, state, reason = (line.split("|") + ["", ""])[:3]
                if jid == job_id and state:
                    found[job_id] = JobState(state.split()[0], reason)  # "CANCELLED by 0" -> CANCELLED
        return found

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            self._run("scancel", *job_ids, check=False)


@dataclass
class _Batch:
    name: str
    directory: Path
    rows: list[int]
    attempts: dict[int, int]
    job_id: str = ""
    submitted: float = field(default_factory=time.time)
    started: float | None = None  # first seen running
    state: JobState = JobState("PENDING")
    cancelled_because: str = ""  # we cancelled it: why
    unknown_since: float | None = None


def label_pending_slurm(
    store: StructureStore,
    spec: CalculatorSpec,
    settings: SlurmSettings,
    *,
    limit: int | None = None,
    generation: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = 3,
    workdir: str | Path | None = None,
    recover_running: bool = False,
    retry_failed: bool = False,
    keep_files: bool = False,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> LabelReport:
    """Label pending rows of `store`'s campaign as SLURM jobs; the arguments mean what they mean for
    `label_pending` (timeout_s: per structure inside the job). `workdir` must be shared with the
    compute nodes. Returns the LabelReport; its `jobs` lists every job with its final state."""
    check_settings(timeout_s=timeout_s, max_attempts=max_attempts, limit=limit)
    root = job_root(store, workdir).absolute()
    if recover_running:  # before the rows go back to pending: their jobs from a dead submitter must not run on
        cancel_orphaned_jobs(root, {row.id for row in store.select(Status.RUNNING)}, SlurmCommands(settings))
    run = LabelingRun(store, spec, limit=limit, generation=generation, max_attempts=max_attempts,
                      recover_running=recover_running, retry_failed=retry_failed)
    return _SlurmLabeling(run, settings, root, timeout_s, min_distance, keep_files).label()


class _SlurmLabeling:
    def __init__(self, run: LabelingRun, settings: SlurmSettings, root: Path, timeout_s: float,
                 min_distance: float, keep_files: bool):
        self.run, self.settings, self.root = run, settings, root
        self.timeout_s, self.min_distance, self.keep_files = timeout_s, min_distance, keep_files
        self.slurm = SlurmCommands(settings)
        self.in_flight: dict[str, _Batch] = {}
        self.submit_refused = False

    def label(self) -> LabelReport:
        try:
            while True:
                while len(self.in_flight) < self.settings.max_jobs and self._submit_next():
                    pass
                if not self.in_flight:
                    return self.run.report
                time.sleep(self.settings.poll_s)
                self._poll()
        except BaseException:
            self._cancel_all("the labelling was interrupted")
            raise

    # -- submitting --------------------------------------------------------------------------------

    def _submit_next(self) -> bool:
        """Claim up to structures_per_job rows and submit them as one job; False when none are left,
        or once sbatch refused a job (a wrong partition or account would refuse every batch: one
        batch's structures record the error, the rest stay pending for the next call)."""
        if self.submit_refused:
            return False
        rows: list[int] = []
        batch: _Batch | None = None
        try:
            while len(rows) < self.settings.structures_per_job and (row_id := self.run.claim()) is not None:
                rows.append(row_id)
            if not rows:
                return False
            store = self.run.store
            name = f"{self.settings.job_name}-{_slug(store.campaign)}-{rows[0]}"
            if len(rows) > 1:
                name += f"-{rows[-1]}"
            batch = _Batch(name, self.root / f"{name}-{uuid.uuid4().hex[:8]}", rows, {})
            try:
                self._write_and_submit(batch)
            except Exception as exc:  # sbatch refused, disk trouble, a setting job_script cannot write
                self.submit_refused = True
                if batch.job_id:  # sbatch took it (writing job_id failed): it must not run on unwatched
                    self.in_flight.pop(batch.job_id, None)
                    self._cancel_quietly(batch.job_id)
                log.error(f"no more SLURM jobs in this call: {name} could not be submitted: {exc}")
                reason = str(exc) if isinstance(exc, (OSError, SlurmError)) else f"{type(exc).__name__}: {exc}"
                self._finish(batch, because=f"the job could not be submitted: {reason}")
                return False
        except BaseException as exc:  # Ctrl-C, a cancelled task: no claimed row stays running, no job runs on
            if batch is None:
                batch = _Batch("(not submitted)", self.root / "(none)", rows, {})
            if batch.job_id and batch.job_id not in self.in_flight:
                self._cancel_quietly(batch.job_id)
            if batch.job_id not in self.in_flight:
                batch.cancelled_because = batch.cancelled_because or "the labelling was interrupted while submitting"
                self._finish(batch, because=f"{batch.cancelled_because} ({type(exc).__name__})")
            raise
        return True

    def _write_and_submit(self, batch: _Batch) -> None:
        """Write the batch's files and sbatch it; in flight once sbatch returned its id."""
        store, rows, name = self.run.store, batch.rows, batch.name
        self.root.mkdir(parents=True, exist_ok=True)
        batch.directory.mkdir(mode=0o700)  # job.sh can hold environment values: the user's own
        for row_id in rows:
            row = store.get(row_id)
            batch.attempts[row_id] = int(row.provenance.get("attempts", 1))
            directory = structure_dir(batch.directory, row_id)
            directory.mkdir(parents=True)
            ase.io.write(directory / STRUCTURE_FILE, row.frame.atoms, format="traj")
        (batch.directory / BATCH_FILE).write_text(json.dumps({
            "rows": rows, "calculator": self.run.spec.model_dump(mode="json"), "timeout_s": self.timeout_s,
            "min_distance": self.min_distance, "mpi_command": self.settings.mpi_command}))
        script = batch.directory / "job.sh"
        script.write_text(job_script(self.settings, name, batch.directory))
        batch.job_id = self.slurm.submit(script, batch.directory / "slurm-%j.out")
        atomic_write_text(batch.directory / JOB_ID_FILE, batch.job_id)  # for recover_running, should we die
        self.in_flight[batch.job_id] = batch
        log.info(f"submitted SLURM job {batch.job_id} ({name}): structures {', '.join(map(str, rows))}")

    # -- watching ----------------------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            states = self.slurm.states(list(self.in_flight))
        except SlurmError as exc:  # slurmctld unreachable for a moment: ask again next time
            log.warning(f"cannot query SLURM (jobs in flight are kept, not failed), trying again in "
                        f"{self.settings.poll_s:g} s: {exc}")
            return
        now = time.time()
        for job_id, batch in list(self.in_flight.items()):
            state = states.get(job_id)
            if state is None:
                batch.unknown_since = batch.unknown_since or now
                if now - batch.unknown_since < max(_FORGOTTEN_GRACE_S, 3 * self.settings.poll_s):
                    continue
                state = JobState("UNKNOWN", "neither squeue nor sacct knows the job any more")
                self._cancel_quietly(job_id)  # in case it runs on unseen: its rows are about to be retried
            batch.unknown_since = None
            batch.state = state
            if state.state in ENDED or state.state == "UNKNOWN":
                del self.in_flight[job_id]
                self._finish(batch)
            elif state.state == "PENDING":
                if not batch.cancelled_because and now - batch.submitted > self.settings.pending_timeout_s:
                    batch.cancelled_because = (f"did not start within {self.settings.pending_timeout_s:g} s "
                                               f"(pending, reason: {state.reason or 'none given'}) and was cancelled")
                    log.warning(f"SLURM job {job_id} ({batch.name}) {batch.cancelled_because}")
                    self.slurm.cancel([job_id])
            elif batch.started is None:
                batch.started = now

    def _cancel_all(self, because: str) -> None:
        batches = list(self.in_flight.values())
        self.in_flight.clear()
        if not batches:
            return
        for batch in batches:
            batch.cancelled_because = batch.cancelled_because or f"{because}; the job was cancelled"
        try:
            self.slurm.cancel([batch.job_id for batch in batches])
            deadline = time.monotonic() + _INTERRUPT_WAIT_S
            waiting = {batch.job_id: batch for batch in batches}
            while waiting and time.monotonic() < deadline:
                try:
                    states = self.slurm.states(list(waiting))
                except SlurmError as exc:
                    log.warning(f"cannot query SLURM: not waiting for the cancelled jobs to end: {exc}")
                    break
                for job_id, state in states.items():
                    if state.state in ENDED:
                        waiting.pop(job_id).state = state
                if waiting:
                    time.sleep(0.5)
        finally:
            for batch in batches:
                self._finish(batch)

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.slurm.cancel([job_id])
        except SlurmError as exc:
            log.error(f"could not cancel SLURM job {job_id}: {exc}")

    # -- storing -----------------------------------------------------------------------------------

    def _finish(self, batch: _Batch, because: str = "") -> None:
        """The job has ended (or never was): store each structure's outcome, fail the rest."""
        run, store = self.run, self.run.store
        ended = time.time()
        if batch.job_id:
            run.report.jobs.append({
                "job_id": batch.job_id, "name": batch.name, "state": batch.state.state,
                "reason": batch.state.reason, "structures": batch.rows,
                "queued_s": round((batch.started or ended) - batch.submitted, 2),
                "directory": str(batch.directory)})
        all_labelled = True
        for row_id in batch.rows:
            number = batch.attempts.get(row_id, 1)
            outcome = _read_outcome(structure_dir(batch.directory, row_id) / OUTCOME_FILE)
            job = f"SLURM job {batch.job_id} ({batch.name})" if batch.job_id else f"job {batch.name}"
            error = None
            if outcome is None:
                error = because or (f"{job} {batch.cancelled_because}" if batch.cancelled_because else
                                    f"{job} ended {batch.state.state}{_reason(batch.state)} before labelling it"
                                    f"; job log {batch.directory / f'slurm-{batch.job_id}.out'}")
            elif not outcome.get("ok"):
                error = f"{outcome.get('error', 'no reason given')} [{job}]"
            if error is None:
                try:
                    labels = _read_labels(structure_dir(batch.directory, row_id) / RESULT_FILE,
                                          store.get(row_id).frame.atoms)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    error = f"{job} left an unreadable {RESULT_FILE}: {exc}"
            seconds = float((outcome or {}).get("seconds", ended - batch.submitted))
            if error is not None:
                all_labelled = False
                message = f"structure {row_id} (attempt {number}): {error}"
                try:
                    store.fail(row_id, message, labeler_digest=run.spec.digest())
                except StatusError as exc:  # another labeller recovered this row meanwhile: its outcome stands
                    run.record(Attempt(row_id, number, batch.submitted, seconds,
                                       error=f"{message}; not stored: {exc}", stored=False))
                    continue
                run.record(Attempt(row_id, number, batch.submitted, seconds, error=message))
                continue
            try:
                store.complete(row_id, labels, labeler=run.spec.name, labeler_digest=run.spec.digest())
            except StatusError as exc:  # another labeller recovered this row and finished it meanwhile
                run.record(Attempt(row_id, number, batch.submitted, seconds,
                                   error=f"structure {row_id}: labels not stored: {exc}", stored=False))
                continue
            compute = float(outcome.get("compute_seconds", "nan"))
            run.record(Attempt(row_id, number, batch.submitted, seconds, compute))
        if all_labelled and not self.keep_files:
            shutil.rmtree(batch.directory, ignore_errors=True)
        elif batch.directory.is_dir():
            try:
                atomic_write_text(batch.directory / FINISHED_FILE, f"{batch.state.state}\n")
            except OSError as exc:
                log.warning(f"cannot mark {batch.directory} finished: {exc}")


def cancel_orphaned_jobs(root: Path, running: set[int], slurm: SlurmCommands) -> list[str]:
    """scancel the jobs of batch directories under `root` that hold a job id, are not marked finished and
    label any of the `running` rows: a submitting process that died left them; their rows are about to
    be labelled again. Returns the cancelled job ids."""
    cancelled = []
    for id_file in sorted(root.glob(f"*/{JOB_ID_FILE}")) if root.is_dir() else []:
        directory = id_file.parent
        if (directory / FINISHED_FILE).exists():
            continue
        try:
            job_id = id_file.read_text().strip()
            rows = set(json.loads((directory / BATCH_FILE).read_text())["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not job_id.isdigit() or not rows & running:
            continue
        log.warning(f"cancelling SLURM job {job_id} ({directory.name}) of a labelling that did not finish: "
                    f"its structures {', '.join(map(str, sorted(rows & running)))} are labelled again")
        slurm.cancel([job_id])
        atomic_write_text(directory / FINISHED_FILE, "CANCELLED (recovered)\n")
        cancelled.append(job_id)
    return cancelled


_SECRET_NAMES = {"PGPASSWORD", "PREFECT_API_KEY"}
_SECRET_PARTS = ("PASSWORD", "SECRET", "TOKEN")


def job_environment() -> dict[str, str]:
    """This process's environment without its secrets: what the SLURM commands run with. sbatch passes
    its environment on to the job (--export=ALL) and slurmctld keeps it, so the store's password
    (store/secrets.py puts it in PGPASSWORD), an API key or a token must not be in it."""
    return {key: value for key, value in os.environ.items()
            if key not in _SECRET_NAMES and not any(part in key.upper() for part in _SECRET_PARTS)}


def job_script(settings: SlurmSettings, name: str, batch_dir: Path, python: str | None = None) -> str:
    """The batch script of one labelling job: #SBATCH options, modules, setup, environment, the batch."""
    options = [f"--job-name={name}", "--nodes=1",
               f"--ntasks={settings.ntasks}", f"--cpus-per-task={settings.cpus_per_task}",
               f"--time={settings.walltime}", "--no-requeue"]
    chosen = (("partition", settings.partition), ("account", settings.account), ("qos", settings.qos),
              ("mem", settings.memory))
    options += [f"--{key}={value}" for key, value in chosen if value]
    options += settings.sbatch_options
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in options),
             "# Written by mlip-autopipec (labeling/slurm.py): one labelling batch; see batch.json.",
             *(f"module load {shlex.quote(module)}" for module in settings.modules),
             *settings.setup]  # trusted shell, as the campaign file's author wrote it
    for key, value in settings.environment.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"slurm.environment: {key!r} is not a shell variable name")
        lines.append(f"export {key}={shlex.quote(value)}")
    interpreter = python or settings.python or sys.executable
    lines.append(f"exec {shlex.quote(interpreter)} -m mlip_autopipec.labeling.batch_job "
                 f"{shlex.quote(str(batch_dir))}")
    return "\n".join(lines) + "\n"


def _read_outcome(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_labels(path: Path, atoms) -> LabelledFrame:
    result = json.loads(path.read_text())
    return LabelledFrame(atoms=atoms, energy=float(result["energy"]),
                         forces=np.asarray(result["forces"], dtype=float),
                         stress=None if result.get("stress") is None else np.asarray(result["stress"], dtype=float))


def _reason(state: JobState) -> str:
    return f" ({state.reason})" if state.reason and state.reason != "None" else ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:40] or "campaign"


__all__ = ["ENDED", "JobState", "SlurmCommands", "SlurmError", "cancel_orphaned_jobs", "job_environment", "job_script",
           "label_pending_slurm"]
