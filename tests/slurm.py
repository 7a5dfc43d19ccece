"""A throw-away single-node SLURM cluster for a test module (pytest plugin).

Register it with ``pytest_plugins = ["tests.slurm"]`` in a conftest.py. The module fixture
``slurm_cluster`` runs Debian's ``munged``, ``slurmctld`` and ``slurmd`` (package ``slurm-wlm``;
scripts/bootstrap.sh installs it as root) in the foreground as root, with their own munge key, socket,
ports, state and spool directories in a temporary directory, so nothing of a system SLURM is touched;
it points ``SLURM_CONF`` at that cluster while the module runs, and stops every daemon afterwards.

Short timers keep the fault tests quick: a killed job's processes get ``KillWait=2`` s, a job past its
time limit is ended without grace (``OverTimeLimit=0``), a finished job stays visible to ``scontrol
show job`` for ``MinJobAge`` seconds. Tests skip, saying why, without root or without the binaries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    partition: str
    cpus: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def scontrol(self, *args: str) -> str:
        return _run(["scontrol", *args], self.environment())

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (running, pending and recently finished), as
        {JobId, JobName, JobState, Reason, ...} from `scontrol show job --oneliner`."""
        text = _run(["scontrol", "show", "job", "--oneliner"], self.environment(), check=False)
        jobs = []
        for line in text.splitlines():
            if "JobId=" not in line:
                continue
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            jobs.append(fields)
        return jobs

    def scancel(self, job_id: str) -> None:
        _run(["scancel", job_id], self.environment())

    def set_node_state(self, state: str, reason: str = "test", check: bool = True) -> None:
        """DRAIN, DOWN (with `reason`) or RESUME the node; RESUME of a node in service fails unless not `check`."""
        args = ["update", f"NodeName={self.node}", f"State={state}"]
        if state.upper() in ("DRAIN", "DOWN"):
            args.append(f"Reason={reason}")
        _run(["scontrol", *args], self.environment(), check=check)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def slurm_missing() -> str | None:
    """Why no test cluster can start here, or None."""
    if os.geteuid() != 0:
        return "the test SLURM cluster runs slurmctld and slurmd as root; not root"
    missing = [name for name in DAEMONS if _binary(name) is None]
    if missing:
        return (f"{', '.join(missing)} not found: apt-get install slurm-wlm munge "
                "(scripts/bootstrap.sh does as root)")
    return None


def _binary(name: str) -> str | None:
    """Where a SLURM or munge program is: on PATH, or in /usr/sbin (not on a non-root PATH)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")


def write_config(root: Path, node: str, cpus: int, memory_mb: int, partition: str = "debug") -> Path:
    ctld_port, slurmd_port = _free_ports(2)
    for name in ("state", "spool"):
        (root / name).mkdir()
    settings = {
        "ClusterName": "mliptest",
        "SlurmctldHost": node,
        "SlurmctldPort": ctld_port,
        "SlurmdPort": slurmd_port,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={root / 'munge.socket'}",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "slurmctld.log",
        "SlurmdLogFile": root / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "SchedulerType": "sched/backfill",
        "MpiDefault": "none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/filetxt",
        "JobCompLoc": root / "jobcomp.log",
        "ReturnToService": 2,
        "SlurmctldTimeout": 10,
        "SlurmdTimeout": 10,
        "InactiveLimit": 0,
        "MinJobAge": 300,
        "KillWait": 2,
        "OverTimeLimit": 0,
        "Waittime": 0,
        "MessageTimeout": 10,
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
        # The node offers more CPUs than the machine has (jobs of the tests mostly wait), without
        # slurmd draining it for the mismatch.
        "SlurmdParameters": "config_overrides",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN")
    lines.append(f"PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP")
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def start_cluster(root: Path) -> SlurmCluster:
    """munged, slurmctld and slurmd in the foreground; returns once the node is idle."""
    node = socket.gethostname().split(".")[0]
    cpus = max(4, os.cpu_count() or 1)
    conf = write_config(root, node, cpus, memory_mb=1024)
    cluster = SlurmCluster(root, conf, node, "debug", cpus)
    env = {**os.environ, **cluster.environment()}
    key = root / "munge.key"
    _run([_binary("mungekey"), "--create", f"--keyfile={key}"])
    os.chmod(key, 0o600)
    commands = {
        "munged": [_binary("munged"), "--foreground", "--force", f"--socket={root / 'munge.socket'}",
                   f"--key-file={key}", f"--pid-file={root / 'munged.pid'}", f"--seed-file={root / 'munged.seed'}",
                   f"--log-file={root / 'munged.log'}"],
        "slurmctld": [_binary("slurmctld"), "-D", "-i", "-f", str(conf)],
        "slurmd": [_binary("slurmd"), "-D", "-f", str(conf), "-N", node],
    }
    try:
        for name, command in commands.items():
            with open(root / f"{name}.out", "wb") as out:
                cluster.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                          stdin=subprocess.DEVNULL, env=env,
                                                          start_new_session=True))
            if name == "munged":
                _wait_for(lambda: (root / "munge.socket").exists(), "munged's socket", cluster)
        _wait_for(lambda: _node_state(cluster).startswith("IDLE"), "the node to become idle", cluster)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _node_state(cluster: SlurmCluster) -> str:
    text = _run(["sinfo", "--noheader", "--Node", "--format=%T"], cluster.environment(), check=False)
    return text.strip().upper()


def _wait_for(condition, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited ({process.returncode}) while waiting for {what}: "
                                   f"{_logs(cluster)}")
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {START_TIMEOUT_S} s waiting for {what}: {_logs(cluster)}")


def _logs(cluster: SlurmCluster) -> str:
    parts = []
    for path in sorted(cluster.root.glob("*.out")) + sorted(cluster.root.glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
    return "\n".join(parts)


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel what is left, then stop slurmd, slurmctld and munged (SIGTERM, then SIGKILL)."""
    if cluster.processes and all(process.poll() is None for process in cluster.processes):
        subprocess.run(["scancel", "--full", f"--partition={cluster.partition}"], capture_output=True, timeout=30,
                       env={**os.environ, **cluster.environment()}, stdin=subprocess.DEVNULL)
    for process in reversed(cluster.processes):
        if process.poll() is None:
            process.terminate()
    for process in reversed(cluster.processes):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="mlip-slurm-"))
    started = time.monotonic()
    cluster = start_cluster(root)
    print(f"\nSLURM cluster ({cluster.node}, {cluster.cpus} CPUs) in {root}, up in {time.monotonic() - started:.1f} s")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        stop_cluster(cluster)
        shutil.rmtree(root, ignore_errors=True)
